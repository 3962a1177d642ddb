"""Fire-network generator: metaparameters -> spec -> report / PyTorch model (torch loaded lazily,
so ``dse-model`` and budget checks never import it)."""

from dse.model.report import ModelReport, analyze, format_table
from dse.model.spec import NetSpec, build_spec, validate_metaparameters

__all__ = ["ModelReport", "NetSpec", "analyze", "build_model", "build_spec", "format_table",
           "load_torchvision", "validate_metaparameters"]


def __getattr__(name: str):
    if name in ("build_model", "load_torchvision", "FireNet"):
        from dse.model import net

        return getattr(net, name)
    raise AttributeError(name)
