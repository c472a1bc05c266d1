"""workshop: a Jupyter kernel and cell runner for hands-on container workshops."""

__version__ = "0.1.0"
