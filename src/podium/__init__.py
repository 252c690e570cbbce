"""podium: the competition training recipe, done right once."""

__version__ = "0.1.0"
