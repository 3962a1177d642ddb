"""Fire-network generator: metaparameters -> spec -> report / PyTorch model (torch loaded lazily,
so ``dse-model`` and budget checks never import it)."""

from dse.model.spec import ModelReport, NetSpec, analyze, build_spec, format_table, validate_metaparameters

__all__ = ["ModelReport", "NetSpec", "analyze", "build_model", "build_spec", "format_table",
           "load_torchvision", "validate_metaparameters"]


def __getattr__(name: str):
    if name in ("build_model", "load_torchvision", "FireNet"):
        from dse.model import net

        return getattr(net, name)
    raise AttributeError(name)
