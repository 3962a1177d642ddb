"""Deep Compression (Han et al.) of generated Fire networks, as in SqueezeNet's Table 2.

``prune`` (Table 1 densities), ``quantize`` (k-means weight sharing), ``storage`` and ``huffman``
(the ``.dsec`` file), ``int8`` (onnxruntime static quantization), ``pipeline`` (checkpoint ->
retrain / fine-tune -> rows and files), ``results`` (table, files, store columns), ``cli``.
"""
