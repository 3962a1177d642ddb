"""dse: design-space exploration for SqueezeNet's Fire networks."""

__version__ = "0.1.0"
# What a config hash trains: bump it with any change that alters a run's numbers for the same config
# (data order, initialisation, loss, schedule, metrics). Stored with every row (training_semantics),
# so older rows are told apart; tests/test_semantics.py pins a tiny run's numbers to catch a missed bump.
TRAINING_SEMANTICS = 1
