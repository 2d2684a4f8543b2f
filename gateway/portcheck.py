"""``python3 -m gateway.portcheck``: is the configured listen address free?

It prints the line ``dev`` and ``serve`` would stop with when GATEWAY_HOST:GATEWAY_PORT
(or GATEWAY_METRICS_PORT) is taken, and exits 1; 2 for a bad setting; 0 when free.
It imports only the standard library and the gateway's config and server modules,
so ``make run`` runs it from the checkout before installing anything.
"""

from __future__ import annotations

import sys

from gateway.config import Config, ConfigError
from gateway.server import ListenError, listen


def main() -> int:
    try:
        config = Config.from_env()
    except ConfigError as exc:
        sys.stderr.write(f"artifact-gateway: {exc}\n")
        return 2
    try:
        listen(config).close()
    except ListenError as exc:
        sys.stderr.write(f"artifact-gateway: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
