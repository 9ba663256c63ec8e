"""留痕 command line and wiring. Nothing imports this package."""

__version__ = "0.1.0"
