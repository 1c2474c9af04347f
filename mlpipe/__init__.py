"""mlpipe: provision and operate an AWS ML inference pipeline from one declarative spec."""

__version__ = "0.1.0"
