"""berth: a container engine in Python (OCI runtime, engine, CLI)."""

__version__ = "0.1.0"
