"""Where each in-memory dataset comes from, parsed by torchvision, cached once per process.

A sweep trains many networks in one process; reading and parsing the IDX/pickle files once and
keeping the uint8 tensors (see :func:`load_arrays`) removes that cost from every run but the first.
"""

from __future__ import annotations

import gzip
import os
import shutil
from functools import lru_cache
from pathlib import Path

import torch

from dse.errors import ConfigError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FMNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
Arrays = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def cache_dir() -> Path:
    """dse's download/decompression cache (``$DSE_CACHE`` or ``~/.cache/dse``)."""
    return Path(os.environ.get("DSE_CACHE", Path.home() / ".cache" / "dse")).expanduser()


def _idx_dir(candidate: Path) -> Path | None:
    """The folder holding the four Fashion-MNIST IDX files (raw or .gz) under ``candidate``."""
    for d in (candidate, candidate / "FashionMNIST" / "raw", candidate / "fashion-mnist"):
        if all((d / f).is_file() or (d / f"{f}.gz").is_file() for f in FMNIST_FILES):
            return d
    return None


def _fashion_mnist(root: str | None, download: bool) -> Arrays:
    from torchvision.datasets import FashionMNIST

    cache = cache_dir()
    raw = cache / "FashionMNIST" / "raw"
    candidates = [Path(root).expanduser()] if root else []
    candidates.append(DEBIAN_FASHION_MNIST)
    src = next((d for d in map(_idx_dir, candidates) if d is not None), None)
    if src is not None and src != raw:
        raw.mkdir(parents=True, exist_ok=True)
        for f in FMNIST_FILES:  # torchvision parses the decompressed files in its raw folder
            if not (raw / f).is_file():
                tmp = raw / f"{f}.part{os.getpid()}"
                if (src / f).is_file():
                    shutil.copyfile(src / f, tmp)
                else:
                    with gzip.open(src / f"{f}.gz", "rb") as fin, open(tmp, "wb") as fout:
                        shutil.copyfileobj(fin, fout)
                os.replace(tmp, raw / f)  # atomic: parallel workers never see half a file
    elif src is None and not download:
        raise ConfigError("data.root", f"Fashion-MNIST not found in {root or '-'} or "
                          f"{DEBIAN_FASHION_MNIST}, and data.download=false")
    train = FashionMNIST(str(cache), train=True, download=src is None)
    test = FashionMNIST(str(cache), train=False, download=False)
    return train.data[:, None], train.targets, test.data[:, None], test.targets


def _cifar(name: str, root: str | None, download: bool) -> Arrays:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    base = str(Path(root).expanduser()) if root else str(cache_dir())
    try:
        train, test = (cls(base, train=t, download=download) for t in (True, False))
    except RuntimeError as e:
        raise ConfigError("data.root", f"{name} not found under {base}: {e}") from None

    def arr(ds) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets)

    return (*arr(train), *arr(test))


def _synthetic(channels: int, size: int, classes: int, n: int) -> Arrays:
    g = torch.Generator().manual_seed(1234)
    x = torch.randint(0, 256, (2 * n, channels, size, size), dtype=torch.uint8, generator=g)
    y = torch.randint(0, classes, (2 * n,), generator=g)
    return x[:n], y[:n], x[n:], y[n:]


@lru_cache(maxsize=4)
def load_arrays(name: str, root: str | None = None, download: bool = True, channels: int = 3,
                image_size: int = 32, num_classes: int = 10, synthetic_size: int = 2048) -> Arrays:
    """(train_x, train_y, test_x, test_y) as uint8 [N, C, H, W] / int64 [N] CPU tensors."""
    if name == "fashion_mnist":
        return _fashion_mnist(root, download)
    if name in ("cifar10", "cifar100"):
        return _cifar(name, root, download)
    if name == "synthetic":
        return _synthetic(channels, image_size, num_classes, synthetic_size)
    raise ConfigError("data.name", f"no in-memory source for {name!r}")
