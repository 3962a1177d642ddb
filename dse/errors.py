"""One error type for bad input, and the one place that turns any config error into one line.

Every command-line tool in dse promises the same contract for bad input: a single line naming the
field, exit code 2, nothing written. Keeping the formatting here means Hydra's multi-line composition
errors, OmegaConf's type errors and dse's own range checks all read alike.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

T = TypeVar("T")

EXIT_BAD_INPUT = 2


class ConfigError(ValueError):
    """Bad user input; ``field`` is the dotted config key (or argument) that is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def first_line(text: object) -> str:
    """The first non-empty line of ``text`` (an exception's message, a traceback), stripped."""
    return next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")


def one_line(exc: BaseException) -> str:
    """Condense a (possibly chained, multi-line) config exception into one readable line."""
    try:  # OmegaConf errors know the offending key; Hydra wraps them in composition errors
        from omegaconf.errors import OmegaConfBaseException
    except ImportError:  # pragma: no cover - omegaconf is a hard dependency
        OmegaConfBaseException = ()  # type: ignore[assignment]  # noqa: N806

    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for e in chain:
        if isinstance(e, ConfigError):
            return str(e)
    for e in chain:
        if (missing := _missing_option(e)) is not None:
            return missing
    for e in chain:
        if isinstance(e, OmegaConfBaseException):
            key = getattr(e, "full_key", None)
            msg = str(getattr(e, "msg", "") or e).strip().splitlines()[0]
            head = str(exc).strip().splitlines()[0] if e is not exc else ""
            text = f"{key}: {msg}" if key else msg
            return f"{head} {text}".strip() if head and head not in text else text
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    # Hydra puts the useful detail ("Unknown function 'uniform'") on a later line, after advice.
    detail = next((ln for ln in lines[1:] if not ln.startswith(("To append", "Available", "Set the"))),
                  "")
    return f"{lines[0]} {detail}".strip()


def _missing_option(exc: BaseException) -> str | None:
    """``model: no option 'nope' (choose one of ...)`` for a config-group option that does not exist.

    Hydra's own text lists the options one per line after advice, so a generic cut of it would end
    in whichever option happens to come first.
    """
    from hydra.errors import MissingConfigException

    if not isinstance(exc, MissingConfigException) or not exc.missing_cfg_file or not exc.options:
        return None
    group, _, option = exc.missing_cfg_file.rpartition("/")
    return f"{group}: no option {option!r} (choose one of {', '.join(exc.options)})"


def fail(prog: str, exc: BaseException | str) -> NoReturn:
    """Print ``prog: error: <one line>`` to stderr and exit with code 2."""
    text = exc if isinstance(exc, str) else one_line(exc)
    print(f"{prog}: error: {text}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def config_exceptions() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'the user's input is wrong' (not a bug, not a training failure)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    return (ConfigError, HydraException, OmegaConfBaseException)


def guard(prog: str, fn: Callable[[], T]) -> T:
    """Run ``fn``; map bad-input exceptions to a one-line error and exit 2."""
    try:
        return fn()
    except config_exceptions() as e:
        fail(prog, e)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors follow the bad-input contract: one line, exit 2, no usage block.

    Sub-parsers inherit it (``add_subparsers`` builds them with the parser's own class).
    """

    def error(self, message: str) -> NoReturn:
        fail(self.prog.split()[0], message)
