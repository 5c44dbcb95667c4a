"""floorwatch host tools: simulator, contract checks and the command line."""

__version__ = "0.1.0"
