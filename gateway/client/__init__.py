"""Deprecated: the client is the distribution ``mobius-artifacts``; import ``mobius_artifacts``.

``gateway.client`` (and its modules ``core``, ``sync``, ``errors``, ``cli``)
re-exports the same names for one release and will then be removed.
"""

import mobius_artifacts
from mobius_artifacts import *  # noqa: F403 - the same public names, for one release

__all__ = list(mobius_artifacts.__all__)
