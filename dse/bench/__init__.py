"""``dse-bench``: how fast dse trains on the device at hand, and how many trials to pack on it
(docs/BENCHMARKS.md). Nothing heavy is imported here, so ``--help`` and option errors answer at once."""
