"""What the dse_optuna sweeper (hydra_plugins/dse_optuna_sweeper) shares with its training jobs and
with :mod:`analysis`; the plugin imports this package, never the other way round."""
