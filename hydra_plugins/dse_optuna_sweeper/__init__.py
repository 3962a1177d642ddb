"""``hydra/sweeper=dse_optuna``: a ``-m`` run as an Optuna 5 study (docs/OPTUNA.md). Hydra's plugin
scan imports every public module here on start-up, so only the ``_``-prefixed ones import Optuna."""
