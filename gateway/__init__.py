"""Artifact ingestion gateway: the HTTP layer and composition root."""

# The one place the version is written: the distribution's metadata (pyproject.toml's
# dynamic version), `artifact-gateway --version`, the OpenAPI document, the
# build_info metric and the client's User-Agent all read it from here.
__version__ = "0.1.0"
