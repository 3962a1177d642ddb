"""dse's Optuna sweeper for Hydra: ``hydra/sweeper=dse_optuna`` makes a ``-m`` run an Optuna study.

The released hydra-optuna-sweeper pins ``optuna<3``; this plugin speaks Optuna 5's ask-and-tell API
and adds what design-space exploration needs: several objectives by metric name, budgets checked
before training, resumable studies shared by several worker processes, heartbeats and pruning.
See docs/OPTUNA.md.

Hydra imports every public module of ``hydra_plugins`` on start-up (``hydra/core/plugins.py``), so
nothing here may import Optuna at module level: the heavy code lives in ``_``-prefixed modules,
which the plugin scanner skips, and is imported when a sweep actually starts.
"""
