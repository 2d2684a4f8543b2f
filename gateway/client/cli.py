"""Deprecated: see :mod:`mobius_artifacts.cli`."""

from mobius_artifacts.cli import (
    EXIT_AUTH,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_QUOTA,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    ProgressBar,
    exit_status,
    human_size,
    register_client_commands,
)

__all__ = [
    "EXIT_AUTH",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_QUOTA",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "ProgressBar",
    "exit_status",
    "human_size",
    "register_client_commands",
]
