"""Deployable files of a trained design point (``dse-export``), checked against PyTorch."""


class ExportMismatch(RuntimeError):
    """A file's outputs differ from PyTorch's: the exporter or a runtime erred, not the input."""
