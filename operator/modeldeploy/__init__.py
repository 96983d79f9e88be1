"""modeldeploy: serve models on Triton with metric-gated progressive delivery."""

__version__ = "0.1.0"
