"""GazeTR-style 3D gaze estimation from face and eye crops, trained on EVE (HDF5)."""

__version__ = "0.3.0"
