"""Running exported files: an onnxruntime session or a TorchScript module behind one call, and
the images and accuracies they are checked on.

A *runner* takes a float32 torch batch [N, C, H, W] and returns the logits as a numpy array,
whatever runs underneath, so the equality check, the accuracy and the latency treat every format
alike. onnxruntime runs on the CPU execution provider with the graph optimisations on.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

INPUT, OUTPUT = "input", "logits"  # the names of the exported graph's input and output
Runner = Callable[[torch.Tensor], np.ndarray]


def session(data: bytes, threads: int = 0) -> Any:
    """An onnxruntime CPU session of an ONNX file; ``threads`` intra-op threads (0: onnxruntime's
    default, one per core), one inter-op thread, sequential execution."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: no "removing initializer" chatter
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def onnx_runner(data: bytes, threads: int = 0) -> Runner:
    sess = session(data, threads)

    def run(x: torch.Tensor) -> np.ndarray:
        return sess.run([OUTPUT], {INPUT: np.ascontiguousarray(x.numpy(), dtype=np.float32)})[0]

    return run


def torch_runner(model: nn.Module) -> Runner:
    """``model`` (an inference copy or a TorchScript module) without autograd."""
    def run(x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return model(x).numpy()

    return run


def load_torchscript(data: bytes) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation warning
        return torch.jit.load(io.BytesIO(data), map_location="cpu").eval()


def runner(fmt: str, data: bytes, threads: int = 0) -> Runner:
    """The runner of a file in ``fmt`` (``onnx``, ``int8`` or ``torchscript``)."""
    if fmt in ("onnx", "int8"):
        return onnx_runner(data, threads)
    if fmt == "torchscript":
        return torch_runner(load_torchscript(data))
    raise ValueError(f"no runtime for {fmt!r}")


def batches(dm: Any, split: str) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """A data module's (images, labels) batches of ``split`` (train, val or test), on the CPU."""
    dm.setup("fit" if split == "train" else split)
    return {"train": dm.train_dataloader, "val": dm.val_dataloader,
            "test": dm.test_dataloader}[split]()


def first_images(dm: Any, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images and labels of ``split`` in its loader's order (fewer if it is
    smaller): the train loader's order is its seeded shuffle, val and test are in file order."""
    xs, ys, have = [], [], 0
    for x, y in batches(dm, split):
        xs.append(x.cpu().float())
        ys.append(y.cpu())
        have += len(y)
        if have >= n:
            break
    return torch.cat(xs)[:n].contiguous(), torch.cat(ys)[:n]


def accuracy(run: Runner, loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
             ks: tuple[int, ...] = (1, 5)) -> dict[int, float]:
    """Top-k accuracy (fractions) of a runner over every batch of ``loader``."""
    hits = dict.fromkeys(ks, 0)
    n = 0
    for x, y in _cpu(loader):
        logits = torch.from_numpy(run(x))
        top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
        for k in ks:
            hits[k] += int((top[:, :k] == y[:, None]).any(dim=1).sum())
        n += len(y)
    return {k: hits[k] / n for k in ks} if n else dict.fromkeys(ks, float("nan"))


def _cpu(loader: Iterable[tuple[torch.Tensor, torch.Tensor]]
         ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for x, y in loader:
        yield x.cpu().float().contiguous(), y.cpu()
