"""Lightning's console chatter, silenced the same way by every tool that trains."""

from __future__ import annotations

import logging
import warnings

LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")
# Lightning's own deprecation noise, its advice for the DataLoader-less in-memory batches, and its
# hint to prepend srun, given once per job on any machine where Slurm is installed: dse's Slurm
# launcher (submitit) starts one task per job itself, so there is nothing to prepend
NOISE = (".*LeafSpec.*", ".*smaller than the logging interval.*",
         ".*`srun` command is available on your system but is not used.*")


def quiet_lightning(*, every_warning: bool = False) -> None:
    """Keep "GPU available: ..." and Lightning's known noise out of a tool's output (Lightning is
    imported first: its import sets its loggers to INFO). ``every_warning``: all of Lightning's
    warnings too (dse-compress's several short fits would repeat each)."""
    import lightning  # noqa: F401

    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in NOISE:
        warnings.filterwarnings("ignore", message=message)
    if every_warning:
        warnings.filterwarnings("ignore", module="lightning")
