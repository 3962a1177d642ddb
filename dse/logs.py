"""Lightning's console chatter, silenced the same way by every tool that trains."""

from __future__ import annotations

import logging
import warnings

LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")
# deprecations, advice for DataLoader-less batches, and "prepend srun" (submitit starts the tasks)
NOISE = (".*LeafSpec.*", ".*smaller than the logging interval.*",
         ".*`srun` command is available on your system but is not used.*")


def quiet_lightning(*, every_warning: bool = False) -> None:
    """Keep "GPU available: ..." and Lightning's known noise out of a tool's output (after importing
    Lightning, which sets its loggers to INFO); ``every_warning``: all its warnings too."""
    import lightning  # noqa: F401

    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in NOISE:
        warnings.filterwarnings("ignore", message=message)
    if every_warning:
        warnings.filterwarnings("ignore", module="lightning")
