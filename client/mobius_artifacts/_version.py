"""The version of the ``mobius-artifacts`` distribution (read by its build, too)."""

__version__ = "0.1.0"
