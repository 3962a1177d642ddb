"""What the dse_optuna sweeper hands each training job (docs/OPTUNA.md), written and read here only:
the trial number as the config value ``study.trial`` (the store records it), the connection to the
live trial as ``DSE_OPTUNA_*`` variables through ``hydra.job.env_set``, which any launcher carries (the
storage URL may hold a password, which must never reach the recorded config)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

ENV_PREFIX = "DSE_OPTUNA_"
TRIAL_KEY = "study.trial"


@dataclass(frozen=True)
class Handoff:
    """One trial as its job sees it."""

    storage: str  # the storage URL the sweeper validated (dse.sweep.storage.parse_storage)
    study: str  # the Optuna study name
    trial_id: int  # the trial's id in the storage
    trial_number: int  # the trial's number in the study
    pruner: dict[str, Any]  # dse.sweep.pruners.pruner_spec of the sweep

    def env(self) -> dict[str, str]:
        """The environment variables that carry this handoff."""
        values = {**asdict(self), "pruner": json.dumps(self.pruner, separators=(",", ":"))}
        return {f"{ENV_PREFIX}{k.upper()}": str(v) for k, v in values.items()}

    def overrides(self, quote: Any = str) -> list[str]:
        """Job overrides: the trial number as a config value, the rest as ``env_set`` (declared empty
        by the sweeper's config, so launchers leave them out of their launch lines); ``quote`` makes
        a value safe in Hydra's override grammar."""
        return [f"++{TRIAL_KEY}={self.trial_number}",
                *(f"hydra.job.env_set.{k}={quote(v)}" for k, v in self.env().items())]

    @staticmethod
    def declared_env() -> dict[str, str]:
        """Every variable of the handoff, empty (what a job outside a trial reads as no handoff)."""
        return {f"{ENV_PREFIX}{f.name.upper()}": "" for f in fields(Handoff)}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Handoff | None:
        """This job's handoff, or None outside a dse_optuna sweep (or with a partial one)."""
        env = os.environ if env is None else env
        raw = {f.name: env.get(f"{ENV_PREFIX}{f.name.upper()}", "").strip() for f in fields(cls)}
        if not all(raw[f] for f in ("storage", "study", "trial_id", "trial_number")):
            return None
        try:
            pruner = json.loads(raw["pruner"]) if raw["pruner"] else {}
            return cls(raw["storage"], raw["study"], int(raw["trial_id"]),
                       int(raw["trial_number"]), pruner if isinstance(pruner, dict) else {})
        except ValueError:
            return None
