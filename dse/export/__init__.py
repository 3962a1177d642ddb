"""Deployable files and measured speed of a trained design point (``dse-export``).

``formats`` (ONNX and TorchScript files of a network, and the check that a runtime's outputs equal
PyTorch's), ``latency`` (CPU inference latency with onnxruntime and torch: the ``latency_*``
columns of dse.metrics.LATENCY), ``int8`` (onnxruntime static post-training quantization with a
calibration subset of the train split) and ``cli`` (``dse-export``). Submodules are imported on use,
so ``import dse.export`` stays light: dse.validate asks :func:`missing` without importing torch.
"""

from __future__ import annotations

import importlib.util

# what exporting and timing need beyond dse's own dependencies: pip install 'dse[export]'
REQUIRES = ("onnx", "onnxruntime", "onnxscript")
INSTALL_HINT = "pip install 'dse[export]'"


def missing() -> list[str]:
    """The packages of :data:`REQUIRES` that are not installed (found without importing them)."""
    return [name for name in REQUIRES if importlib.util.find_spec(name) is None]


class ExportMismatch(RuntimeError):
    """A file whose outputs differ from PyTorch's by more than the tolerance (not bad input: the
    exporter or a runtime got the network wrong)."""
