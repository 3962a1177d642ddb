"""Claims: one worker at a time trains a (config_hash, seed), however many sweeps of a study run. A worker
inserts the point's row into ``claims``, whose primary key lets one insert through; the others wait for the
claim to go and take the row its holder stored. A heartbeat keeps the claim alive; it is stale once expired,
or when its holder is a dead process on this host."""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from dse.errors import ConfigError
from dse.store.record import utcnow_iso
from dse.store.schema import CLAIMS_TABLE, FIELD
from dse.store.store import ResultsStore

log = logging.getLogger("dse.store")

TTL_S = 120.0  # a claim whose heartbeat stopped this long ago is stale
HEARTBEAT_S = 15.0  # how often a holder pushes its expiry forward
POLL_S = 1.0  # how often a waiting worker looks again
HOST = socket.gethostname()


@dataclass(frozen=True)
class Holder:
    """A row of ``claims``: who trains the point, which row it will store, until when it is valid."""

    config_hash: str
    seed: int
    run_id: str
    token: str
    host: str
    pid: int
    claimed_at: str
    expires_at: float

    def stale(self) -> bool:
        return time.time() > self.expires_at or (self.host == HOST and not _alive(self.pid))

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs (a killed, unreaped zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _where(h: Holder) -> Any:
    t = CLAIMS_TABLE
    return sa.and_(t.c.config_hash == h.config_hash, t.c.seed == h.seed, t.c.token == h.token)


def holder(store: ResultsStore, config_hash: str, seed: int) -> Holder | None:
    t = CLAIMS_TABLE
    row = store.first(sa.select(t).where(t.c.config_hash == config_hash, t.c.seed == int(seed)))
    return Holder(**row) if row is not None else None


class Claim:
    """A claim this process holds: kept fresh by a heartbeat thread, released on exit."""

    def __init__(self, store: ResultsStore, mine: Holder) -> None:
        self.store, self.holder, self.run_id = store, mine, mine.run_id
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True,
                                      name=f"claim-{mine.config_hash}-{mine.seed}")

    def __enter__(self) -> Claim:
        self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._beat.join()
        try:
            self.store.execute(CLAIMS_TABLE.delete().where(_where(self.holder)))
        except SQLAlchemyError as e:  # it expires by itself; the row matters, not the claim
            log.info("could not release the claim on %s seed %d: %s", self.holder.config_hash,
                     self.holder.seed, str(getattr(e, "orig", e)))

    def _heartbeat(self) -> None:
        h = self.holder
        while not self._stop.wait(HEARTBEAT_S):
            try:
                if self.store.execute(CLAIMS_TABLE.update().where(_where(h))
                                      .values(expires_at=time.time() + TTL_S)) == 0:
                    log.warning("the claim on %s seed %d was taken over as stale; another worker "
                                "may train it too", h.config_hash, h.seed)
                    return
            except SQLAlchemyError:
                continue  # the store is busy or gone for now; the next beat tries again


def acquire(store: ResultsStore, config_hash: str, seed: int) -> Claim | Holder:
    """Claim this point and seed for this process, or return the live holder of the claim on it.
    A stale claim is deleted by its token (two reapers cannot delete a fresh one)."""
    mine = Holder(config_hash, int(seed), uuid.uuid4().hex, uuid.uuid4().hex, HOST, os.getpid(),
                  utcnow_iso(), 0.0)
    while True:
        mine = replace(mine, expires_at=time.time() + TTL_S)
        try:
            store.execute(CLAIMS_TABLE.insert().values(**asdict(mine)))
            return Claim(store, mine)
        except IntegrityError:
            pass
        except DBAPIError as e:  # before training: a store that cannot take a claim takes no row
            raise ConfigError(FIELD, f"cannot write to results store {store}: {e.orig}") from e
        other = holder(store, config_hash, seed)
        if other is None:  # released between our insert and our look
            continue
        if not other.stale():
            return other
        log.info("taking over the stale claim of %s on %s seed %d (claimed at %s)", other,
                 config_hash, seed, other.claimed_at)
        store.execute(CLAIMS_TABLE.delete().where(_where(other)))


def wait(store: ResultsStore, other: Holder) -> dict[str, Any] | None:
    """Wait while ``other`` holds its claim and lives; then the row it stored, or None."""
    while (current := holder(store, other.config_hash, other.seed)) is not None \
            and current.token == other.token and not current.stale():
        time.sleep(POLL_S * (0.5 + random.random()))
    return store.run(other.run_id)
