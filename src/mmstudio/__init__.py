"""mmstudio: a self-hosted multi-modal generation studio."""

__version__ = "0.1.0"
