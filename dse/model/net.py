"""The PyTorch networks of :class:`~dse.model.spec.NetSpec` specs, with stable layer names
(``features.fire2.squeeze.conv``, torchvision's order) for checkpoints, masks and reports. K of them train
as one network of grouped layers (HFTA, Wang et al. 2021): one kernel launch trains K launch-bound design
points. Every layer is padded to its widest member; :meth:`FusedFireNet.mask_grads` keeps the padding at
zero, so member k computes exactly its :class:`FireNet`, the group of one. Hand-written: HFTA fuses
identical models only; members here differ in widths and bypass."""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dse.model.spec import POOL_KERNEL, POOL_STRIDE, Conv, Fire, NetSpec, build_spec


def macro_key(spec: NetSpec) -> tuple:
    """What fused members share: the layout (the stem holds input channels and BatchNorm), not widths."""
    return spec.stem, len(spec.fires), spec.pool_after, spec.classifier.out_ch


@dataclass(frozen=True)
class Layout:
    """Member k's channel c is fused channel ``k * width + pos[k][c]``."""

    width: int
    pos: tuple[tuple[int, ...], ...]

    @classmethod
    def plain(cls, counts: list[int]) -> Layout:
        return cls(max(counts), tuple(tuple(range(c)) for c in counts))

    @classmethod
    def concat(cls, a: Layout, b: Layout) -> Layout:
        """Fire's expand output: member k's 1x1 channels, then its 3x3 channels after ``a.width``."""
        return cls(a.width + b.width, tuple(pa + tuple(a.width + p for p in pb)
                                            for pa, pb in zip(a.pos, b.pos, strict=True)))

    def channels(self, k: int) -> torch.Tensor:
        return torch.tensor([k * self.width + p for p in self.pos[k]], dtype=torch.long)


class GroupedBlock(nn.Module):
    """Conv (bias unless BatchNorm follows) -> optional BatchNorm -> optional ReLU, K members' as groups;
    ``has[k]``: whether member k has this layer (else its slice stays 0)."""

    def __init__(self, src: Layout, dst: Layout, has: list[bool], kernel: int, stride: int = 1,
                 padding: int = 0, bn: bool = False, relu: bool = True) -> None:
        super().__init__()
        k = len(has)
        self.src, self.dst, self.has = src, dst, has
        self.conv = nn.Conv2d(k * src.width, k * dst.width, kernel, stride, padding, groups=k, bias=not bn)
        self.bn = nn.BatchNorm2d(k * dst.width) if bn else None
        self.relu = nn.ReLU(inplace=True) if relu else None
        for p in self.parameters():
            nn.init.zeros_(p)

    def index(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Member k's output rows and (within its group) input columns of the conv weight."""
        return self.dst.channels(k), torch.tensor(self.src.pos[k], dtype=torch.long)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.relu(x) if self.relu is not None else x


class FusedFire(nn.Module):
    """K Fire modules: squeeze, expand 1x1 || 3x3 regrouped per member, shortcuts per member."""

    def __init__(self, fires: list[Fire], src: Layout) -> None:
        super().__init__()
        bn, self.k = fires[0].batch_norm, len(fires)
        sq = Layout.plain([f.s1x1 for f in fires])
        e1, e3 = Layout.plain([f.e1x1 for f in fires]), Layout.plain([f.e3x3 for f in fires])
        self.out = Layout.concat(e1, e3)
        self.squeeze = GroupedBlock(src, sq, [True] * self.k, 1, bn=bn)
        self.expand1x1 = GroupedBlock(sq, e1, [f.e1x1 > 0 for f in fires], 1, bn=bn) if e1.width else None
        self.expand3x3 = (GroupedBlock(sq, e3, [f.e3x3 > 0 for f in fires], 3, padding=1, bn=bn)
                          if e3.width else None)
        conv = [f.shortcut == "conv" for f in fires]
        self.shortcut = GroupedBlock(src, self.out, conv, 1, bn=bn, relu=False) if any(conv) else None
        # per-member masked identity; unused entries index the member's own input: its NaN stays its own
        n = self.k * self.out.width
        idx = torch.tensor([(c // self.out.width) * src.width for c in range(n)], dtype=torch.long)
        keep = torch.zeros(n)
        for k, f in enumerate(fires):
            if f.shortcut == "identity":
                idx[self.out.channels(k)] = src.channels(k)
                keep[self.out.channels(k)] = 1.0
        self.register_buffer("identity_idx", idx, persistent=False)
        self.register_buffer("identity_keep", keep.view(1, -1, 1, 1), persistent=False)
        self.has_identity = any(f.shortcut == "identity" for f in fires)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        outs = [b(s) for b in (self.expand1x1, self.expand3x3) if b is not None]
        if len(outs) == 2 and self.k > 1:
            n, _, h, w = outs[0].shape
            out = torch.cat([o.reshape(n, self.k, -1, h, w) for o in outs], 2).reshape(n, -1, h, w)
        else:
            out = outs[0] if len(outs) == 1 else torch.cat(outs, 1)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        if self.has_identity:
            out = out + (x if self.k == 1 else x.index_select(1, self.identity_idx) * self.identity_keep)
        return out


class FusedFireNet(nn.Module):
    """K members with one macro layout (:func:`macro_key`): input ``[N, K * C, H, W]``, logits
    ``[N, K, classes]``; dropout drawn per member from its own generator, reproducible from its seed."""

    def __init__(self, specs: list[NetSpec]) -> None:
        super().__init__()
        if len({macro_key(s) for s in specs}) != 1:
            raise ValueError("fused members must share stem, n_fire, pool_after, batch_norm, "
                             "input channels and classes")
        self.k = len(specs)
        first = specs[0]
        layout = Layout.plain([first.stem.in_ch] * self.k)
        feats: OrderedDict[str, nn.Module] = OrderedDict()
        for layers in zip(*(s.layers[:-1] for s in specs), strict=True):
            name = layers[0].name
            if isinstance(layers[0], Conv):
                dst = Layout.plain([c.out_ch for c in layers])
                c = layers[0]
                feats[name] = GroupedBlock(layout, dst, [True] * self.k, c.kernel, c.stride,
                                           c.padding, c.batch_norm)
            else:
                feats[name] = FusedFire(list(layers), layout)
                dst = feats[name].out
            layout = dst
            if name in first.pool_after:
                feats["pool" + name.removeprefix("conv").removeprefix("fire")] = nn.MaxPool2d(
                    POOL_KERNEL, POOL_STRIDE, ceil_mode=True)
        self.features = nn.Sequential(feats)
        head = first.classifier
        self.dropout = [s.dropout for s in specs]
        self.dropout_generators: list[torch.Generator | None] = [None] * self.k
        self.classifier = nn.Sequential(OrderedDict(**{head.name: GroupedBlock(
            layout, Layout.plain([head.out_ch] * self.k), [True] * self.k, 1)}))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.register_buffer("active", torch.ones(self.k, dtype=torch.bool), persistent=False)
        self._live_cache: dict[str, torch.Tensor] = {}

    @classmethod
    def of(cls, nets: list[FireNet], generators: list[torch.Generator]) -> FusedFireNet:
        """The members' initialised networks as one, each drawing dropout from its generator."""
        fused = cls([n.spec for n in nets])
        for k, net in enumerate(nets):
            fused.load_member(k, net.state_dict())
        fused.dropout_generators = list(generators)
        return fused

    def blocks(self) -> dict[str, GroupedBlock]:
        return {n: m for n, m in self.named_modules() if isinstance(m, GroupedBlock)}

    @functools.cached_property
    def _masks(self) -> dict[str, torch.Tensor]:
        """Per parameter, per member: where its real entries are (``[K, *param.shape]`` bools)."""
        masks = {n: torch.zeros(self.k, *p.shape, dtype=torch.bool) for n, p in self.named_parameters()}
        for k in range(self.k):
            for key, (_, idx) in self._slices(k).items():
                if key in masks:
                    masks[key][k][idx] = True
        return masks

    def mask_grads(self) -> None:
        """Zero every gradient outside the active members' real entries (a fill: NaN is dropped too)."""
        for name, p in self.named_parameters():
            if p.grad is not None:
                p.grad.masked_fill_(self._dead(name, p.device), 0.0)

    def _dead(self, name: str, device: torch.device) -> torch.Tensor:
        """Where no active member has a real entry, cached until a member is frozen."""
        dead = self._live_cache.get(name)
        if dead is None or dead.device != device:
            act = self.active.cpu().view(-1, *([1] * (self._masks[name].dim() - 1)))
            dead = self._live_cache[name] = ~(self._masks[name] & act).any(0).to(device)
        return dead

    def freeze(self, k: int, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Member k out of training: its slices and optimizer state zeroed (NaN too), gradients masked."""
        self.active[k] = False
        self._live_cache.clear()
        with torch.no_grad():
            for block in self.blocks().values():
                rows = slice(k * block.dst.width, (k + 1) * block.dst.width)
                for p in block.parameters():
                    p[rows] = 0.0
                    state = optimizer.state.get(p, {}) if optimizer is not None else {}
                    for t in state.values():
                        if torch.is_tensor(t) and t.shape == p.shape:
                            t[rows] = 0.0

    def _slices(self, k: int) -> dict[str, tuple[torch.Tensor, Any]]:
        """``FireNet`` state-dict key -> (fused tensor, member k's index into it)."""
        out: dict[str, tuple[torch.Tensor, Any]] = {}
        for name, block in self.blocks().items():
            if block.has[k]:
                for tname, t in [*block.named_parameters(), *block.named_buffers()]:
                    rows, cols = (i.to(t.device) for i in block.index(k))
                    # num_batches_tracked (0-d) is one count for the whole group
                    idx = (rows[:, None], cols[None, :]) if tname == "conv.weight" else rows
                    out[f"{name}.{tname}"] = (t, () if t.dim() == 0 else idx)
        return out

    def member_state(self, k: int) -> dict[str, torch.Tensor]:
        """Member k's weights and BN statistics under ``FireNet``'s state-dict keys."""
        return {key: t.detach()[idx].clone() for key, (t, idx) in self._slices(k).items()}

    def load_member(self, k: int, state: dict[str, torch.Tensor]) -> None:
        """Write a ``FireNet`` state dict (its keys) into member k's slices."""
        slices = self._slices(k)
        with torch.no_grad():
            for key, value in state.items():
                t, idx = slices[key]
                t[idx] = value.to(t.device, t.dtype)

    def _dropout(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's dropout from its own generator, drawn as ``F.dropout`` draws on the CPU, so a
        group of one equals ``FireNet`` bit for bit."""
        if not self.training or not any(self.dropout):
            return x
        n, _, h, w = x.shape
        parts = x.reshape(n, self.k, -1, h, w).unbind(1)
        kept = [part if p == 0 else part * torch.empty_like(part).bernoulli_(1 - p, generator=g).div_(1 - p)
                for p, g, part in zip(self.dropout, self.dropout_generators, parts, strict=True)]
        return kept[0] if self.k == 1 else torch.stack(kept, 1).reshape(n, -1, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.classifier(self._dropout(self.features(x)))
        return self.pool(x).flatten(1).view(x.shape[0], self.k, -1)


class FireNet(FusedFireNet):
    """One Fire network: a fused group of one (one layer walk, one set of state-dict keys), with
    torchvision's init, ``nn.Dropout``'s draws and logits ``[N, classes]``."""

    def __init__(self, spec: NetSpec) -> None:
        super().__init__([spec])
        self.spec = spec
        final = self.classifier[0].conv
        for m in self.modules():  # torchvision's init; biases and BN shifts keep GroupedBlock's zeros
            if m is final:
                nn.init.normal_(m.weight, mean=0.0, std=0.01)
            elif isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)

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
            raise ValueError(f"shape mismatch: torchvision {tk} {tuple(tv.shape)} vs {ok} {tuple(ov.shape)}")
        mapped[ok] = tv
    model.load_state_dict(mapped, strict=True)
    return model
