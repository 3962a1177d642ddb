"""Deep Compression (Han et al.) of generated Fire networks, as in SqueezeNet's Table 2."""
