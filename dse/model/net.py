"""The PyTorch Fire network of a :class:`~dse.model.spec.NetSpec`; stable layer names
(``features.fire2.squeeze.conv``, torchvision's order) for checkpoints, masks and reports."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dse.model.fused import FusedFireNet
from dse.model.spec import NetSpec, build_spec


class FireNet(FusedFireNet):
    """One Fire network: a fused group of one (one layer walk, one set of state-dict keys), with
    torchvision's init, ``nn.Dropout``'s draws and logits ``[N, classes]``."""

    def __init__(self, spec: NetSpec) -> None:
        super().__init__([spec])
        self.spec = spec
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torchvision's init: kaiming-uniform convs, normal(0, 0.01) classifier, zero biases."""
        final = self.classifier[0].conv
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is final:
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.dropout(self.features(x), self.dropout[0], self.training)
        return self.pool(self.classifier(x)).flatten(1)


def build_model(cfg: Any) -> FireNet:
    """Build the network a model config (dataclass, DictConfig or dict) or NetSpec describes."""
    return FireNet(cfg if isinstance(cfg, NetSpec) else build_spec(cfg))


def load_torchvision(model: FireNet, source: nn.Module | dict[str, torch.Tensor]) -> FireNet:
    """Copy a torchvision ``squeezenet1_0``/``1_1`` model or state_dict into ``model``: both list
    their tensors in one order, so they are matched by position and checked by shape."""
    state = source.state_dict() if isinstance(source, nn.Module) else source
    theirs = [(k, v) for k, v in state.items() if k.endswith((".weight", ".bias"))]
    ours = [(k, v) for k, v in model.state_dict().items() if k.endswith((".weight", ".bias"))]
    if len(theirs) != len(ours):
        raise ValueError(f"torchvision weights have {len(theirs)} tensors, the generated network "
                         f"{len(ours)}: only squeezenet_v1_0/v1_1 layouts without BN/bypass match")
    mapped = {}
    for (tk, tv), (ok, ov) in zip(theirs, ours, strict=True):
        if tv.shape != ov.shape:
            raise ValueError(f"shape mismatch: torchvision {tk} {tuple(tv.shape)} vs {ok} "
                             f"{tuple(ov.shape)}")
        mapped[ok] = tv
    model.load_state_dict(mapped, strict=True)
    return model
