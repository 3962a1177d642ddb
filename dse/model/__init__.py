"""Parametric Fire-network generator: metaparameters -> spec -> report / PyTorch model.

Only the pure-Python parts are imported eagerly so that ``dse-model`` and the sweepers' budget
checks never pay for importing torch; ``build_model`` and ``load_torchvision`` load it on first use.
"""

from dse.model.report import ModelReport, analyze, format_table
from dse.model.spec import NetSpec, build_spec, validate_metaparameters

__all__ = ["ModelReport", "NetSpec", "analyze", "build_model", "build_spec", "format_table",
           "load_torchvision", "validate_metaparameters"]


def __getattr__(name: str):
    if name in ("build_model", "load_torchvision", "FireNet"):
        from dse.model import net

        return getattr(net, name)
    raise AttributeError(name)
