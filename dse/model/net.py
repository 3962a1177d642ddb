"""The PyTorch Fire network of a :class:`~dse.model.spec.NetSpec`, as compact as torchvision's
``squeezenet.py``; stable layer names (``features.fire2``) for checkpoints, masks and reports."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from dse.model.spec import POOL_KERNEL, POOL_STRIDE, Conv, Fire, NetSpec, build_spec


def conv_block(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0,
               bn: bool = False, relu: bool = True) -> nn.Sequential:
    """Conv (bias unless BatchNorm follows) -> optional BatchNorm -> optional ReLU."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv=nn.Conv2d(cin, cout, kernel, stride, padding, bias=not bn))
    if bn:
        layers["bn"] = nn.BatchNorm2d(cout)
    if relu:
        layers["relu"] = nn.ReLU(inplace=True)
    return nn.Sequential(layers)


class FireModule(nn.Module):
    """Squeeze 1x1 -> concat(expand 1x1, expand 3x3); a shortcut adds the input (or a 1x1 of it)."""

    def __init__(self, f: Fire) -> None:
        super().__init__()
        self.squeeze = conv_block(f.in_ch, f.s1x1, 1, bn=f.batch_norm)
        self.expand1x1 = conv_block(f.s1x1, f.e1x1, 1, bn=f.batch_norm) if f.e1x1 else None
        self.expand3x3 = conv_block(f.s1x1, f.e3x3, 3, padding=1, bn=f.batch_norm) if f.e3x3 else None
        self.identity = f.shortcut == "identity"
        self.shortcut = (conv_block(f.in_ch, f.out_ch, 1, bn=f.batch_norm, relu=False)
                         if f.shortcut == "conv" else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        branches = [b(s) for b in (self.expand1x1, self.expand3x3) if b is not None]
        out = branches[0] if len(branches) == 1 else torch.cat(branches, 1)
        if self.shortcut is not None:
            return out + self.shortcut(x)
        return out + x if self.identity else out


class FireNet(nn.Module):
    """A SqueezeNet-family network: stem, Fire modules with max-pools, 1x1 classifier, avg pool."""

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        self.spec = spec
        feats: OrderedDict[str, nn.Module] = OrderedDict()
        for layer in spec.layers[:-1]:
            if isinstance(layer, Conv):
                feats[layer.name] = conv_block(layer.in_ch, layer.out_ch, layer.kernel,
                                               layer.stride, layer.padding, layer.batch_norm)
            else:
                feats[layer.name] = FireModule(layer)
            if layer.name in spec.pool_after:
                feats["pool" + layer.name.removeprefix("conv").removeprefix("fire")] = nn.MaxPool2d(
                    POOL_KERNEL, POOL_STRIDE, ceil_mode=True)
        self.features = nn.Sequential(feats)
        head = spec.classifier
        self.classifier = nn.Sequential(OrderedDict(
            dropout=nn.Dropout(spec.dropout),
            **{head.name: conv_block(head.in_ch, head.out_ch, 1)},
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(1),
        ))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torchvision's init: kaiming-uniform convs, normal(0, 0.01) classifier, zero biases."""
        final = self.classifier[1].conv
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
        return self.classifier(self.features(x))


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
