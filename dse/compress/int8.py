"""int8 post-training quantization: onnxruntime static quantization (QDQ, U8S8 per channel, MinMax
calibration on train images) of a network's ONNX file, int8 on disk and when it runs."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dse import latency
from dse.metrics import ACCURACY, REGISTRY

log = logging.getLogger("dse.compress")
CALIBRATION_IMAGES = 256
CALIBRATION_BATCH = 32
INT8_FILE = "int8.onnx"
LATENCY_COLUMN = "latency_ms"  # what the int8 stage times: onnxruntime, batch 1, median


def quantize(fp32: bytes, calibration: np.ndarray, batch: int = CALIBRATION_BATCH) -> bytes:
    """The int8 ONNX file of ``fp32``, calibrated on ``calibration`` (normalised [N, C, H, W] images)."""
    from onnxruntime import quantization as oq

    images = np.ascontiguousarray(calibration, dtype=np.float32)

    class Reader(oq.CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter([{latency.INPUT: images[i:i + batch]} for i in range(0, len(images), batch)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory(prefix="dse-int8-") as tmp:
        src, pre, out = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        src.write_bytes(fp32)
        oq.quant_pre_process(str(src), str(pre))
        oq.quantize_static(str(pre), str(out), Reader(), quant_format=oq.QuantFormat.QDQ, per_channel=True,
                           weight_type=oq.QuantType.QInt8, activation_type=oq.QuantType.QUInt8,
                           calibrate_method=oq.CalibrationMethod.MinMax)
        return out.read_bytes()


def batches(dm: Any, split: str) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """A data module's (images, labels) batches of ``split`` (train, val or test)."""
    dm.setup("fit" if split == "train" else split)
    return {"train": dm.train_dataloader, "val": dm.val_dataloader, "test": dm.test_dataloader}[split]()


def first_images(dm: Any, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images and labels of ``split`` on the CPU (train: its seeded shuffle)."""
    xs, ys, have = [], [], 0
    for x, y in batches(dm, split):
        xs.append(x.cpu().float())
        ys.append(y.cpu())
        have += len(y)
        if have >= n:
            break
    return torch.cat(xs)[:n].contiguous(), torch.cat(ys)[:n]


def accuracy(run: latency.Runner, loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
             ks: tuple[int, ...] = (1, 5)) -> dict[int, float]:
    """Top-k accuracy (fractions) of a runner over every batch of ``loader``."""
    hits = []  # a batch's [images, max(ks)]: whether the label is the logit of that rank
    for x, y in loader:
        logits = torch.from_numpy(run(x.cpu().float().contiguous()))
        hits.append(logits.topk(min(max(ks), logits.shape[1]), dim=1).indices == y.cpu()[:, None])
    n = sum(map(len, hits))
    return {k: sum(int(h[:, :k].any(dim=1).sum()) for h in hits) / n if n else float("nan") for k in ks}


def stage(model: nn.Module, cfg: dict[str, Any], dm: Any
          ) -> tuple[bytes, dict[str, float | None], dict[str, float]]:
    """The int8 file of the dense ``model``, its accuracies, and its and the fp32 file's ``latency_ms``."""
    log.info("int8: exporting, calibrating on %d train images, evaluating, timing", CALIBRATION_IMAGES)
    shape = latency.input_shape(cfg)
    fp32 = latency.to_onnx(model, shape)
    data = quantize(fp32, first_images(dm, "train", CALIBRATION_IMAGES)[0].numpy())
    run = latency.onnx_runner(data)
    splits = ["val", *(["test"] if cfg["trainer"].get("test", True) else [])]
    acc = {split: accuracy(run, batches(dm, split)) for split in splits}
    split_of = {m: m.split("_")[0] for m in ACCURACY}  # val_top1 -> val
    metrics = {m: acc[split_of[m]][REGISTRY[m].topk] if split_of[m] in acc else None for m in ACCURACY}
    lat = REGISTRY[LATENCY_COLUMN]
    threads = int(cfg["trainer"].get("latency_threads", 1))
    latencies = {name: latency.profile(latency.onnx_runner(f, threads), shape, threads,
                                       batches=(lat.batch,))[lat.batch][lat.quantile]
                 for name, f in (("dense", fp32), ("int8", data))}
    return data, metrics, latencies
