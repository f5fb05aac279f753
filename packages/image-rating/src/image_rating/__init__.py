"""Multi-dimensional image rating regression (14 perceptual dimensions) with timm backbones."""

__version__ = "0.3.0"
