"""What the dse_optuna sweeper (hydra_plugins/dse_optuna_sweeper) and its training jobs share.

The plugin imports this package, never the other way round: a job opens the study's storage,
builds the sweep's pruner and reads what the sweeper handed it through :mod:`dse.sweep.handoff`,
and :mod:`analysis` reads the trials through :mod:`dse.sweep.trials`, without importing the plugin.
"""
