"""Hydra's sweep grammar -> Optuna distributions, and sampled values -> job overrides Hydra parses to
exactly that value. ``choice`` is categorical, ``range`` an integer (or stepped float) range with the
stop excluded as in Hydra, ``interval`` a float interval, ``tag(log, ...)`` a log scale; plain values
go to every job."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    Quote,
    QuotedString,
    RangeSweep,
    Transformer,
)
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from dse.errors import ConfigError, lines_of


@dataclass
class Param:
    """One searched key: its Optuna name and distribution, and how to write a value back."""

    key: str  # the key element of the job override, prefix included
    distribution: BaseDistribution
    choice_texts: list[str] = field(default_factory=list)  # categorical: override text per choice

    def override(self, value: Any) -> str:
        """The job override that sets this parameter to ``value``."""
        dist = self.distribution
        if isinstance(dist, CategoricalDistribution):
            text = self.choice_texts[int(dist.to_internal_repr(value))]
        elif isinstance(dist, IntDistribution):
            text = str(int(value))
        else:
            text = repr(float(value))
        return f"{self.key}={text}"


@dataclass
class SearchSpace:
    """Searched parameters plus the fixed overrides every job gets."""

    params: dict[str, Param]
    fixed: list[str]

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        return {name: p.distribution for name, p in self.params.items()}

    def overrides(self, values: Mapping[str, Any]) -> list[str]:
        """The job's overrides for one sampled point (fixed ones first, as on a command line)."""
        return [*self.fixed, *(p.override(values[n]) for n, p in self.params.items())]


def quote(value: str) -> str:
    """``value`` as a quoted string Hydra's override grammar parses back to exactly ``value``, an
    ``${...}`` in it escaped so OmegaConf keeps it as text."""
    return QuotedString(text=value.replace("${", "\\${"), quote=Quote.single).with_quotes()


def build_search_space(params: Mapping[str, Any] | None, arguments: Sequence[str]) -> SearchSpace:
    """Parse ``hydra.sweeper.params`` and the command line; the command line wins per key."""
    parser = OverridesParser.create()
    entries = [(f"hydra.sweeper.params.{k}", f"{k}={v}") for k, v in (params or {}).items()]
    entries += [(str(a), str(a)) for a in arguments]
    searched: dict[str, Param] = {}
    fixed: dict[str, str] = {}
    for where, line in entries:
        try:
            (ov,) = parser.parse_overrides([line])
        except Exception as e:  # OverrideParseException, HydraException: bad grammar
            raise ConfigError(where, _first_line(e)) from None
        name = ov.key_or_group + (f"@{ov.package}" if ov.package else "")
        searched.pop(name, None)
        fixed.pop(name, None)
        if ov.is_sweep_override():
            searched[name] = Param(ov.get_key_element(), *_distribution(ov, where, parser))
        else:
            fixed[name] = line
    return SearchSpace(searched, list(fixed.values()))


def _distribution(ov: Override, where: str, parser: OverridesParser) -> tuple[BaseDistribution, list[str]]:
    """The Optuna distribution (and categorical override texts) of one sweep override."""
    value = ov.value()
    tags = set(getattr(value, "tags", set()) or set())
    if unknown := tags - {"log"}:
        raise ConfigError(where, f"unknown tag(s) {sorted(unknown)}; only 'log' is understood")
    if getattr(value, "shuffle", False):
        raise ConfigError(where, "shuffle() means nothing to a sampler; use choice() or range()")
    log = "log" in tags
    try:
        if isinstance(value, ChoiceSweep) or (ov.is_choice_sweep() and isinstance(value, list)):
            return _categorical(value, log, where, parser)
        if isinstance(value, RangeSweep):
            return _range(value, log, where), []
        if isinstance(value, IntervalSweep):
            return _interval(value, log, where), []
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:  # Optuna's own checks (log with a step, no choices)
        raise ConfigError(where, _first_line(e)) from None
    raise ConfigError(where, "unsupported sweep; use choice(), range(), interval() or tag(log, ...)")


def _categorical(value: Any, log: bool, where: str, parser: OverridesParser
                 ) -> tuple[BaseDistribution, list[str]]:
    """``choice(...)`` (or ``a,b,c``): the choices as Optuna values and as override texts."""
    if log:
        raise ConfigError(where, "tag(log, ...) applies to range() and interval() only")
    items = value.list if isinstance(value, ChoiceSweep) else value
    texts = [_choice_text(x, parser) for x in items]
    choices = [x.text if isinstance(x, QuotedString) else
               x if x is None or isinstance(x, (str, int, float, bool)) else
               Transformer.str(x) for x in items]
    if len(set(texts)) != len(texts):
        raise ConfigError(where, "choice() lists a value twice")
    return CategoricalDistribution(choices), texts


def _range(value: Any, log: bool, where: str) -> BaseDistribution:
    """``range(start, stop, step)``, stop excluded: integer, or a stepped float range."""
    values = list(value.range())
    if not values:
        raise ConfigError(where, f"range({value.start}, {value.stop}, {value.step}) "
                                 "is empty (the stop is excluded)")
    low, high, step = min(values), max(values), abs(value.step)
    if all(isinstance(v, int) for v in (value.start, value.stop, value.step)):
        return IntDistribution(int(low), int(high), log=log, step=int(step))
    return FloatDistribution(float(low), float(high), step=float(step), log=log)


def _interval(value: Any, log: bool, where: str) -> BaseDistribution:
    """``interval(low, high)``: a float interval, or integers under Hydra's ``int()`` cast."""
    lo, hi = float(value.start), float(value.end)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ConfigError(where, "interval() bounds must be finite numbers")
    if lo >= hi:
        raise ConfigError(where, f"interval({lo:g}, {hi:g}): low must be < high")
    if log and lo <= 0:
        raise ConfigError(where, f"tag(log, interval({lo:g}, {hi:g})) needs low > 0")
    if all(isinstance(x, int) and not isinstance(x, bool) for x in (value.start, value.end)):
        return IntDistribution(int(lo), int(hi), log=log)  # int(interval(...)): both ends kept
    return FloatDistribution(lo, hi, log=log)


def _choice_text(x: Any, parser: OverridesParser) -> str:
    """Override text that parses back to choice ``x``: ``str(choice(1,2))`` gives the strings
    '1' and '2', which must be written quoted or the job would receive the integers."""
    text = Transformer.str(x)
    if isinstance(x, str) and not isinstance(x, QuotedString):
        (ov,) = parser.parse_overrides([f"k={text}"])
        if ov.value() != x or not isinstance(ov.value(), str):
            return quote(x)
    return text


def _first_line(e: BaseException) -> str:
    """The informative line of a (Hydra parser) error: the cause, not "Error parsing override"."""
    lines = lines_of(e) or [type(e).__name__]
    if lines[0].startswith("Error parsing override") and lines[1:] and not lines[1].startswith("See "):
        return lines[1]
    return lines[0]
