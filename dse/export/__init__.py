"""Deployable files of a trained design point (``dse-export``).

``formats`` (ONNX and TorchScript files of a network, and the check that a runtime's outputs equal
PyTorch's), ``job`` (one export: files, checks, timings, outputs) and ``cli`` (``dse-export``). The
latency it reports is measured by :mod:`dse.latency`, the int8 file made by :mod:`dse.compress.int8`.
"""


class ExportMismatch(RuntimeError):
    """A file whose outputs differ from PyTorch's by more than the tolerance (not bad input: the
    exporter or a runtime got the network wrong)."""
