"""One error type for bad input, and the one place that turns any config error into one line.

Every command-line tool in dse promises the same contract for bad input: a single line naming the
field, exit code 2, nothing written. Keeping the formatting here means Hydra's multi-line composition
errors, OmegaConf's type errors and dse's own range checks all read alike.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

EXIT_BAD_INPUT = 2


class ConfigError(ValueError):
    """Bad user input; ``field`` is the dotted config key (or argument) that is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, str]]:
        """Pickle by (field, message): a joblib worker sends a failed job's error back pickled."""
        return type(self), (self.field, self.message)


def lines_of(exc_or_text: BaseException | str) -> list[str]:
    """The non-blank lines of an error's text, stripped: drivers and Hydra pad and wrap freely."""
    return [ln.strip() for ln in str(exc_or_text).splitlines() if ln.strip()]


def first_line(exc_or_text: BaseException | str, *, typed: bool = False) -> str:
    """The first non-blank line of an error: what fits in a log line, a table cell or a stored row.

    An exception without text is named by its type, so the line is never empty. ``typed`` gives
    ``TypeName: first line``, for records where the kind of failure matters as much as its text.
    """
    lines = lines_of(exc_or_text)
    if not isinstance(exc_or_text, BaseException):
        return lines[0] if lines else ""
    name = type(exc_or_text).__name__
    if not lines:
        return name
    return f"{name}: {lines[0]}" if typed else lines[0]


def one_line(exc: BaseException) -> str:
    """Condense a (possibly chained, multi-line) config exception into one readable line."""
    from omegaconf.errors import OmegaConfBaseException  # knows the key; Hydra wraps it

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
            msg = first_line(str(getattr(e, "msg", "") or e))
            head = first_line(str(exc)) if e is not exc else ""
            text = f"{key}: {msg}" if key else msg
            return f"{head} {text}".strip() if head and head not in text else text
    lines = lines_of(exc)
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
    """Print ``prog: error: <one line>`` to stderr and exit with code 2.

    A message may carry a driver's own line breaks (psycopg's "connection refused" adds "Is the
    server running ...?"): they are joined here, where the one-line contract is kept.
    """
    text = " ".join(lines_of(exc if isinstance(exc, str) else one_line(exc)))
    print(f"{prog}: error: {text}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def config_exceptions() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'the user's input is wrong' (not a bug, not a training failure)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    return (ConfigError, HydraException, OmegaConfBaseException)


@contextmanager
def bad_input(prog: str) -> Iterator[None]:
    """Run the body; bad input raised in it becomes ``prog: error: <one line>`` and exit 2.

    Every dse command wraps its work in this one way, so which exceptions count as the user's
    fault (:func:`config_exceptions`) and how they read is decided here and nowhere else.
    """
    try:
        yield
    except config_exceptions() as e:
        fail(prog, e)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors follow the bad-input contract: one line, exit 2, no usage block.

    Sub-parsers inherit it (``add_subparsers`` builds them with the parser's own class).
    """

    def error(self, message: str) -> NoReturn:
        fail(self.prog.split()[0], message)
