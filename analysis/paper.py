"""The SqueezeNet paper's reference numbers (Iandola et al., arXiv 1602.07360v4), defined once for
the sweep charts, the paper check and docs/REPORTS.md (a test keeps the page in step). Accuracies
are ImageNet percentages; sizes the paper's fp32 SqueezeNet v1.0 (1000 classes, 224 px)."""

from __future__ import annotations

from typing import Any

# Where the paper held the other metaparameters during each sweep (§5.2-5.3, §6): among equally
# large candidate groups (a full grid has many), the one closest to this setting is charted.
PAPER_CONTEXT: dict[str, dict[str, Any]] = {
    "sr": {"pct3x3": 0.5, "bypass": "none"},
    "pct3x3": {"sr": 0.5, "bypass": "none"},
    "bypass": {"sr": 0.125, "pct3x3": 0.5},
}

# Figure 3a: top-5 at SR 0.125 (SqueezeNet itself), the SR where it plateaus, and that plateau.
SR_START = {"sr": 0.125, "top5": 80.3, "mb": 4.8}
SR_PLATEAU = {"sr": 0.75, "top5": 86.0, "mb": 19.0}
# Figure 3b: the 3x3 share where top-5 plateaus (SR 0.5).
PCT3X3_PLATEAU = {"pct3x3": 0.5, "top5": 85.6}

# Table 3: bypass kind -> top-1 %, top-5 %, model size in the paper's "MB".
TABLE3: dict[str, dict[str, float]] = {
    "none": {"top1": 57.5, "top5": 80.3, "mb": 4.8},
    "simple": {"top1": 60.4, "top5": 82.5, "mb": 4.8},
    "complex": {"top1": 58.8, "top5": 82.0, "mb": 7.7},
}

# Figure 3's networks, fp32 (params x 4 bytes) in MiB: the paper's "MB" labels are these, rounded.
FIG3_SIZES_MIB: dict[str, dict[float, float]] = {
    "sr": {0.125: 4.76, 0.25: 7.50, 0.5: 12.99, 0.75: 18.47, 1.0: 23.95},  # at pct3x3 0.5
    "pct3x3": {0.01: 5.64, 0.5: 12.99, 0.99: 20.33},  # at SR 0.5
}
SIZE_DIGITS = 2  # FIG3_SIZES_MIB is rounded to this many decimals: the tolerance of a size match

# The paper's networks as conf/model/ presets (v1.0, v1.1), starred on the charts.
PRESETS = ("squeezenet_v1_0", "squeezenet_v1_1")
# The paper's network, as dse's generator builds it: the preset in conf/model/, on ImageNet.
NETWORK = {"preset": PRESETS[0], "in_channels": 3, "num_classes": 1000, "image_size": 224}
