"""perception-shared: training infrastructure shared by the perception-lab packages."""

__version__ = "0.3.0"
