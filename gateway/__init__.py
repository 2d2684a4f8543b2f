"""Artifact ingestion gateway: the HTTP layer and composition root."""

__version__ = "0.1.0"
