"""dse: design-space exploration for SqueezeNet's Fire networks."""

__version__ = "0.1.0"
