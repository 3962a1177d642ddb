"""``hydra/sweeper=dse_optuna``: a ``-m`` run as an Optuna 5 study (docs/OPTUNA.md).

hydra-optuna-sweeper pins ``optuna<3`` and lacks budgets, shared resumable studies, heartbeats and
pruning. Hydra's plugin scan imports every public module here on start-up, so Optuna is imported
only by the ``_``-prefixed modules (which the scan skips), when a sweep starts.
"""
