"""SimVP video prediction on very sparse frames: which loss recovers the future positions."""

__version__ = "0.3.0"
