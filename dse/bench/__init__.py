"""``dse-bench``: how fast dse trains on the device at hand, and how many trials to pack on it.

Each measurement answers a sweep planner's question (docs/BENCHMARKS.md): the Lightning training
step against a plain PyTorch loop (``step``), epoch time and time to a target accuracy (``target``),
K concurrent trials per device (``packing``), K design points fused into one network (``fused``)
and optionally ``torch.compile``. Nothing heavy is imported here, so ``dse-bench --help`` and option
errors answer without loading torch.
"""
