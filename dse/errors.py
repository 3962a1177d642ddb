"""One error type for bad input, and the one place that turns any config error into one line (the
contract of every dse tool: one line naming the field, exit code 2, nothing written)."""

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
    """An error's first non-blank line (else its type's name); ``typed``: ``TypeName: first line``."""
    lines = lines_of(exc_or_text)
    if isinstance(exc_or_text, BaseException):
        name = type(exc_or_text).__name__
        lines = [f"{name}: {lines[0]}" if typed else lines[0]] if lines else [name]
    return lines[0] if lines else ""


def one_line(exc: BaseException) -> str:
    """Condense a (possibly chained, multi-line) config exception into one readable line."""
    from omegaconf.errors import OmegaConfBaseException  # knows the key; Hydra wraps it

    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    if found := next((str(e) for e in chain if isinstance(e, ConfigError)), None):
        return found
    if found := next(filter(None, map(_missing_option, chain)), None):
        return found
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
    detail = next((ln for ln in lines[1:] if not ln.startswith(("To append", "Available", "Set the"))), "")
    return f"{lines[0]} {detail}".strip()


def _missing_option(exc: BaseException) -> str | None:
    """``model: no option 'nope' (choose one of ...)``: Hydra lists the options one per line."""
    from hydra.errors import MissingConfigException

    if not isinstance(exc, MissingConfigException) or not exc.missing_cfg_file or not exc.options:
        return None
    group, _, option = exc.missing_cfg_file.rpartition("/")
    return f"{group}: no option {option!r} (choose one of {', '.join(exc.options)})"


def fail(prog: str, exc: BaseException | str) -> NoReturn:
    """Print ``prog: error: <one line>`` (a driver's line breaks joined) to stderr and exit 2."""
    text = " ".join(lines_of(exc if isinstance(exc, str) else one_line(exc)))
    print(f"{prog}: error: {text}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


@contextmanager
def bad_input(prog: str) -> Iterator[None]:
    """Run the body; bad input raised in it (the user's fault, not a bug) becomes one line, exit 2."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        yield
    except (ConfigError, HydraException, OmegaConfBaseException) as e:
        fail(prog, e)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors follow the bad-input contract (sub-parsers inherit it)."""

    def error(self, message: str) -> NoReturn:
        fail(self.prog.split()[0], message)
