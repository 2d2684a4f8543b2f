"""Deprecated: see :mod:`mobius_artifacts.sync`."""

from mobius_artifacts.sync import ArtifactClient, SyncIterator

__all__ = ["ArtifactClient", "SyncIterator"]
