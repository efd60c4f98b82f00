"""stockml: the application layer (settings, CLI, pipeline) over the `training` library."""

__version__ = "0.1.0"
