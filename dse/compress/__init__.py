"""Deep Compression (Han et al.) of generated Fire networks, as in SqueezeNet's Table 2.

``prune`` (magnitude pruning to exact per-layer densities, Table 1), ``quantize`` (per-layer k-means
weight sharing with trainable centroids), ``storage`` (the sparse, Huffman-coded file format),
``pipeline`` (checkpoint -> retrain / fine-tune -> table, files, store rows) and ``cli``
(``dse-compress``). Submodules are imported on use so that ``import dse.compress`` stays light.
"""
