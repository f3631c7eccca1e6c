"""The one place einrel's version is written (packaging reads it from here)."""

__version__ = "0.1.0"
