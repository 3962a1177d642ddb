"""The datasets dse knows (:data:`SOURCES`, the one list every other derives from) and where each in-memory
one comes from, parsed once per process; torch is imported on use (dse.validate reads :data:`SOURCES`)."""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from dse.errors import ConfigError, first_line

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FMNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
Arrays = tuple["torch.Tensor", "torch.Tensor", "torch.Tensor", "torch.Tensor"]


def cache_dir() -> Path:
    """dse's download/decompression cache (``$DSE_CACHE`` or ``~/.cache/dse``)."""
    return Path(os.environ.get("DSE_CACHE", Path.home() / ".cache" / "dse")).expanduser()


def _idx_dir(candidate: Path) -> Path | None:
    """The folder holding the four Fashion-MNIST IDX files (raw or .gz) under ``candidate``."""
    for d in (candidate, candidate / "FashionMNIST" / "raw", candidate / "fashion-mnist"):
        if all((d / f).is_file() or (d / f"{f}.gz").is_file() for f in FMNIST_FILES):
            return d
    return None


def _fashion_mnist(root: str | None, download: bool, **_: Any) -> Arrays:
    from torchvision.datasets import FashionMNIST

    cache = cache_dir()
    raw = cache / "FashionMNIST" / "raw"
    candidates = [*([Path(root).expanduser()] if root else []), DEBIAN_FASHION_MNIST]
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
    try:
        train = FashionMNIST(str(cache), train=True, download=src is None)
    except (RuntimeError, OSError) as e:
        raise ConfigError("data.root", f"Fashion-MNIST not found in {root or '-'} or {DEBIAN_FASHION_MNIST}"
                          f" and not downloaded ({first_line(e)}): pass the folder of its IDX files "
                          "as data.root") from None
    test = FashionMNIST(str(cache), train=False, download=False)
    return train.data[:, None], train.targets, test.data[:, None], test.targets


def _cifar(name: str, root: str | None, download: bool, **_: Any) -> Arrays:
    import torch
    from torchvision import datasets

    cls = getattr(datasets, name.upper())
    base = str(Path(root).expanduser()) if root else str(cache_dir())
    try:
        train, test = (cls(base, train=t, download=download) for t in (True, False))
    except (RuntimeError, OSError) as e:  # not there, and offline or download=false
        raise ConfigError("data.root", f"{name} not found under {base} ({first_line(e)}): put "
                          f"the extracted {cls.base_folder}/ in a folder and pass it as data.root") from None

    def arr(ds) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets)

    return (*arr(train), *arr(test))


def _synthetic(channels: int, image_size: int, num_classes: int, synthetic_size: int, **_: Any) -> Arrays:
    import torch

    g = torch.Generator().manual_seed(1234)
    n = synthetic_size
    x = torch.randint(0, 256, (2 * n, channels, image_size, image_size), dtype=torch.uint8, generator=g)
    y = torch.randint(0, num_classes, (2 * n,), generator=g)
    return x[:n], y[:n], x[n:], y[n:]


class Shape(NamedTuple):
    """What a dataset with fixed images delivers, whatever the config says."""

    channels: int
    image_size: int
    num_classes: int


@dataclass(frozen=True)
class Source:
    """One ``data.name``: how its arrays load (None: ImageFolder from disk), its fixed shape and its
    training images before the val split (None: the config's)."""

    load: Callable[..., Arrays] | None
    shape: Shape | None = None
    train_images: int | None = None


SOURCES: dict[str, Source] = {
    "fashion_mnist": Source(_fashion_mnist, Shape(1, 28, 10), 60000),
    "cifar10": Source(partial(_cifar, "cifar10"), Shape(3, 32, 10), 50000),
    "cifar100": Source(partial(_cifar, "cifar100"), Shape(3, 32, 100), 50000),
    "synthetic": Source(_synthetic),
    "imagenet": Source(None),
}
IN_MEMORY = tuple(name for name, s in SOURCES.items() if s.load)  # one device each: not sharded


SOURCE_KEYS = ("name", "root", "download", "channels", "image_size", "num_classes", "synthetic_size")


def source_args(dc: Any) -> dict[str, Any]:
    """:func:`load_arrays`' arguments from a data config, one spelling for its every caller (the
    cache is keyed by them)."""
    return {k: getattr(dc, k) for k in SOURCE_KEYS}


@lru_cache(maxsize=4)
def load_arrays(name: str, **kwargs: Any) -> Arrays:
    """(train_x, train_y, test_x, test_y): uint8 [N, C, H, W] / int64 [N] CPU tensors of a data config."""
    source = SOURCES.get(name)
    if source is None or source.load is None:
        raise ConfigError("data.name", f"no in-memory source for {name!r}")
    return source.load(**kwargs)
