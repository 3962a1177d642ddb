"""``hydra/launcher=dse_fused``: a sweep's batch trained as fused groups on one device (dse.train.group)."""
