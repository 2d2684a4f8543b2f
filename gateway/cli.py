"""``artifact-gateway``: dev, serve, gc, migrate, token; and the client's subcommands.

Exit status: 0 ok, 2 usage or configuration error, 1 anything else. The client's
subcommands (publish, ls, download, url, rm, quota, watch) are those of
``mobius-artifacts`` (:mod:`mobius_artifacts.cli`), with their own exit statuses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from gateway import __version__
from gateway.config import Config, ConfigError, Requirement, SigningKey
from gateway.logs import redact_urls

if TYPE_CHECKING:
    from gateway.server import Listeners

ALL_SCOPES = "artifacts:read artifacts:write artifacts:delete artifacts:admin claims:write"


def _fail(message: str, status: int = 2) -> NoReturn:
    print(f"artifact-gateway: {redact_urls(message)}", file=sys.stderr)
    raise SystemExit(status)


def _load_config(*required: Requirement) -> Config:
    """The config, or one message naming every bad (and every ``required``) variable."""
    try:
        return Config.from_env(required=required)
    except ConfigError as exc:
        _fail(str(exc))


def _listen(config: Config) -> Listeners:
    """The listening sockets, or one line and exit status 1 when the address is taken."""
    from gateway.server import ListenError, listen

    try:
        return listen(config)
    except ListenError as exc:
        _fail(str(exc), status=1)


def _run_server(
    config: Config, listeners: Listeners, workers: int = 1, *, announce: bool = False
) -> bool:
    """Serve until stopped; True when a second Ctrl-C asked to stop at once."""
    from gateway.server import serve

    return serve(config, workers, listeners, announce=announce)


def cmd_serve(args: argparse.Namespace) -> None:
    config = _load_config(Config.missing_backends, Config.missing_keys)
    if args.workers is None:
        from gateway.server import usable_cpus

        workers = usable_cpus()
    elif args.workers < 1:
        _fail("--workers must be at least 1")
    else:
        workers = args.workers
    _run_server(config, _listen(config), workers)


def cmd_gc(args: argparse.Namespace) -> None:
    config = _load_config(Config.missing_backends)
    from gateway.gc import run_once
    from gateway.logs import configure_logging

    configure_logging(config.log_level, config.log_format, colors=not config.no_color)
    report = asyncio.run(run_once(config, grace_seconds=args.grace_seconds))
    print(json.dumps(report.as_dict()))


def cmd_migrate(args: argparse.Namespace) -> None:
    from gateway.migrate import migrate_configured

    config = _load_config()
    if not config.database_url:
        _fail("GATEWAY_DATABASE_URL: is required")
    applied = asyncio.run(migrate_configured(config))
    for migration in applied:
        print(f"applied {migration.version:04d}_{migration.name}")
    if not applied:
        print("schema is up to date")


def _dev_secrets_candidates(config: Config) -> list[Path]:
    """Where ``dev`` keeps its generated secrets: GATEWAY_DATA_DIR when set, else the
    default folder here or in the nearest parent that has one (as ``make run`` leaves it
    at the root of the checkout)."""
    if os.environ.get("GATEWAY_DATA_DIR"):
        return [config.data_dir.resolve() / "secrets.json"]
    here = Path.cwd()
    return [folder / config.data_dir / "secrets.json" for folder in (here, *here.parents)]


def _secret_for_tokens(config: Config) -> bytes:
    if config.auth_jwt_secret is not None:
        return config.auth_jwt_secret
    candidates = _dev_secrets_candidates(config)
    for secrets_file in candidates:
        if not secrets_file.is_file():
            continue
        try:  # the embedded dev stack's generated secret
            return str(json.loads(secrets_file.read_text())["auth_jwt_secret"]).encode()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _fail(f"cannot read the dev secret in {secrets_file}: {type(exc).__name__}: {exc}")
    where = (
        str(candidates[0])
        if len(candidates) == 1
        else f"{config.data_dir / 'secrets.json'} here or in a parent folder"
    )
    _fail(
        "no secret to sign with: set GATEWAY_AUTH_JWT_SECRET, or GATEWAY_DATA_DIR to the "
        f"data dir of `artifact-gateway dev` (found no {where})"
    )


def _positive_seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def cmd_token(args: argparse.Namespace) -> None:
    from gateway.auth import SCOPES, mint_principal_token

    config = _load_config()
    scopes = args.scope.split()
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        _fail(f"unknown scope(s): {' '.join(unknown)}; known: {' '.join(SCOPES)}")
    print(
        mint_principal_token(
            secret=_secret_for_tokens(config),
            sub=args.sub,
            scopes=scopes,
            projects=args.project or ["*"],
            issuer=config.auth_jwt_issuer,
            audience=config.auth_jwt_audience,
            ttl_seconds=args.ttl,
        )
    )


def _raise_exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _dev_log_format(config: Config) -> Config:
    """``dev`` in a terminal logs lines for people; piped, or with GATEWAY_LOG_FORMAT
    set, it logs what the config says (JSON by default)."""
    if not config.log_format_set and sys.stderr.isatty():
        return config.with_overrides(log_format="console")
    return config


def cmd_dev(args: argparse.Namespace) -> None:
    from gateway.auth import mint_principal_token
    from gateway.devstack import (
        SEAWEEDFS_PORT_NAMES,
        DevStackError,
        EmbeddedPostgres,
        EmbeddedSeaweedFS,
        load_or_create_secrets,
        remembered_ports,
    )
    from gateway.migrate import migrate

    config = _dev_log_format(_load_config())
    # The address first: a port another process holds fails before anything starts.
    listeners = _listen(config)
    config = config.with_overrides(port=listeners.port)  # GATEWAY_PORT=0: the one chosen
    # Stop what we started even when asked to stop during start-up.
    signal.signal(signal.SIGTERM, _raise_exit)
    data_dir = config.data_dir.resolve()
    secrets = load_or_create_secrets(data_dir)
    postgres: EmbeddedPostgres | None = None
    seaweedfs: EmbeddedSeaweedFS | None = None
    hurry = False  # a second Ctrl-C: the backends stop without their own drains
    try:
        overrides: dict[str, Any] = {}
        names: tuple[str, ...] = ("postgres",) if not config.database_url else ()
        names += SEAWEEDFS_PORT_NAMES if not config.s3_endpoint_url else ()
        ports = remembered_ports(data_dir, names)
        if not config.database_url:
            postgres = EmbeddedPostgres(data_dir, port=ports["postgres"]).start()
            overrides["database_url"] = postgres.url()
        if not config.s3_endpoint_url:
            seaweedfs = EmbeddedSeaweedFS(
                data_dir,
                access_key_id=secrets["s3_access_key_id"],
                secret_access_key=secrets["s3_secret_access_key"],
                bucket=config.s3_bucket,
                ports={name: ports[name] for name in SEAWEEDFS_PORT_NAMES},
            ).start()
            overrides |= {
                "s3_endpoint_url": seaweedfs.endpoint_url,
                "s3_access_key_id": secrets["s3_access_key_id"],
                "s3_secret_access_key": secrets["s3_secret_access_key"],
            }
        if config.auth_jwt_secret is None and not config.auth_jwt_public_keys:
            overrides["auth_jwt_secret"] = secrets["auth_jwt_secret"].encode()
        if not config.lease_signing_keys:
            key = SigningKey(kid="dev-lease", secret=secrets["lease_signing_key"].encode())
            overrides["lease_signing_keys"] = (key,)
        if not config.url_signing_keys:
            key = SigningKey(kid="dev-url", secret=secrets["url_signing_key"].encode())
            overrides["url_signing_keys"] = (key,)
        config = config.with_overrides(**overrides)
        assert config.database_url is not None
        asyncio.run(migrate(config.database_url))
        replica_env = write_replica_env(config, data_dir)
        token = None
        if config.auth_jwt_secret is not None:
            token = mint_principal_token(
                secret=config.auth_jwt_secret,
                sub="user:dev-admin",
                scopes=ALL_SCOPES.split(),
                projects=["*"],
                issuer=config.auth_jwt_issuer,
                audience=config.auth_jwt_audience,
                ttl_seconds=30 * 86400,
            )
        _print_banner(
            config, data_dir, token, postgres, seaweedfs, demo=args.demo, replica_env=replica_env
        )
        if args.demo:
            _seed_demo_in_background(config, token)
        hurry = _run_server(config, listeners, announce=True)
    except DevStackError as exc:
        _fail(str(exc), status=1)
    except KeyboardInterrupt:  # Ctrl-C before the gateway served: stop what started
        raise SystemExit(128 + signal.SIGINT) from None
    finally:
        # Nothing interrupts the stopping of what this command started.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        listeners.close()
        parts = [name for name, part in (("Postgres", postgres), ("SeaweedFS", seaweedfs)) if part]
        if parts:
            print(f"stopping {' and '.join(parts)}", flush=True)
        if seaweedfs is not None:
            seaweedfs.stop(timeout=0.5 if hurry else 5)
        if postgres is not None:
            postgres.stop()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)


REPLICA_ENV = "replica.env"


def replica_env_lines(config: Config) -> list[str]:
    """``KEY='value'`` lines of what ``serve`` needs to join ``config``'s backends and keys."""

    def keys(items: tuple[SigningKey, ...]) -> str:
        return ",".join(f"{k.kid}:{k.secret.decode()}" for k in items)

    values = {
        "GATEWAY_DATABASE_URL": config.database_url,
        "GATEWAY_S3_ENDPOINT_URL": config.s3_endpoint_url,
        "GATEWAY_S3_BUCKET": config.s3_bucket,
        "GATEWAY_S3_REGION": config.s3_region,
        "GATEWAY_S3_ACCESS_KEY_ID": config.s3_access_key_id,
        "GATEWAY_S3_SECRET_ACCESS_KEY": config.s3_secret_access_key,
        "GATEWAY_AUTH_JWT_SECRET": config.auth_jwt_secret.decode()
        if config.auth_jwt_secret
        else None,
        "GATEWAY_AUTH_JWT_ISSUER": config.auth_jwt_issuer,
        "GATEWAY_AUTH_JWT_AUDIENCE": config.auth_jwt_audience,
        "GATEWAY_LEASE_SIGNING_KEY": keys(config.lease_signing_keys),
        "GATEWAY_URL_SIGNING_KEYS": keys(config.url_signing_keys),
    }
    return [f"{name}={shlex.quote(value)}" for name, value in values.items() if value]


def write_replica_env(config: Config, data_dir: Path) -> Path:
    """``<data dir>/replica.env`` (mode 0600): the environment of a ``serve`` beside ``dev``."""
    path = data_dir / REPLICA_ENV
    text = "\n".join(
        [
            "# `artifact-gateway serve` on the Postgres, SeaweedFS and keys of",
            "# `artifact-gateway dev`, written by dev at each start:",
            f"#   set -a; . {shlex.quote(str(path))}; set +a; "
            "GATEWAY_PORT=8081 artifact-gateway serve",
            *replica_env_lines(config),
            "",
        ]
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(text)
    return path


def _command_name() -> str:
    """How to run this ``artifact-gateway`` from here: the script beside this Python."""
    script = Path(sys.executable).parent / "artifact-gateway"
    if not script.exists():
        return "artifact-gateway"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def _local_base(config: Config) -> str:
    """The gateway's URL as seen from this machine (a wildcard address is loopback)."""
    wildcard = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "[::1]"}  # noqa: S104
    host = wildcard.get(config.host, config.host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{config.port}"


def _seed_demo_in_background(config: Config, token: str | None) -> None:
    """Seed the demo project once the gateway answers (``dev --demo``), beside the server."""
    import threading

    from gateway import demo

    if token is None:
        print("demo: not seeded: dev has no secret to mint its admin token with", flush=True)
        return

    def run() -> None:
        try:
            count = demo.seed(_local_base(config), token)
        except Exception as exc:
            print(f"demo: not seeded: {type(exc).__name__}: {exc}", flush=True)
            return
        if count:
            print(f"demo: seeded project {demo.PROJECT!r} with {count} artifacts", flush=True)
        else:
            print(f"demo: project {demo.PROJECT!r} was seeded before", flush=True)

    threading.Thread(target=run, name="demo-seed", daemon=True).start()


# Shell lines of the copy-paste session (the banner of `dev`, README.md's "Using it"):
# one field of a JSON answer, or the whole answer on stderr when it has no such field.
JSON_FIELD = (
    "json_field() { python3 -c 'import json,sys; t=sys.stdin.read(); "
    'd=json.loads(t) if t.startswith("{") else {}; k=sys.argv[1]; '
    'print(d[k]) if k in d else sys.exit("no " + k + " in the answer: " + '
    '(t.strip() or "(empty: is the gateway running?)"))\' "$1"; }'
)
NEW_JOB = "JOB=job_$(python3 -c 'import uuid; print(uuid.uuid4().hex[:12])')"


def _print_banner(
    config: Config,
    data_dir: Path,
    token: str | None,
    postgres: Any,
    seaweedfs: Any,
    *,
    demo: bool = False,
    replica_env: Path | None = None,
) -> None:
    from gateway.server import free_port_near

    base = _local_base(config)
    pg = postgres.url() if postgres else "GATEWAY_DATABASE_URL"
    s3 = seaweedfs.endpoint_url if seaweedfs else config.s3_endpoint_url
    lines = [
        f"artifact gateway (dev) on {base}",
        f"  data dir   {data_dir}",
        f"  postgres   {pg}",
        f"  s3         {s3}  bucket={config.s3_bucket}",
        "",
    ]
    if replica_env is not None:
        spare = free_port_near(config.host, config.port)
        lines += [
            "a second gateway on the same data (another terminal; any free GATEWAY_PORT):",
            f"  set -a; . {shlex.quote(str(replica_env))}; set +a; "
            f"GATEWAY_PORT={spare} {_command_name()} serve",
            "",
        ]
    if token:
        claim = (
            '{"run_id":"run_1","step_id":"build","job_id":"\'"$JOB"\'","attempt":1,'
            '"worker_session_id":"ws_1","ttl_seconds":3600}'
        )
        auth = '-H "Authorization: Bearer $TOKEN"'
        page = "ui/projects/demo" if demo else "ui/"
        lines += [
            "artifact browser (the link signs in with the admin token below):",
            f"  {base}/{page}#token={token}",
            "",
            "admin principal token (all scopes, all projects, 30 days):",
            f"  export GW={base}",
            f"  export TOKEN={token}",
            "",
            "try it (it writes ./report.md; run it as often as you like: each run is a new job):",
            f"  {JSON_FIELD}",
            f"  {NEW_JOB}",
            '  echo "hello from $JOB" > report.md',
            f"  LEASE=$(curl -s -X POST $GW/v1/projects/demo/claims {auth} "
            f"-H 'Content-Type: application/json' -d '{claim}' | json_field lease_token)",
            "  ID=$(curl -s -X POST $GW/v1/projects/demo/artifacts "
            '-H "X-Mobius-Lease-Token: $LEASE" -F file=@report.md | json_field id)',
            f"  curl -s -w '\\n' $GW/v1/projects/demo/artifacts/$ID {auth}",
            f"  curl -s $GW/v1/projects/demo/artifacts/$ID/content {auth}",
            "",
        ]
    lines.append(
        "Ctrl-C stops the gateway, Postgres and SeaweedFS: requests in flight finish first "
        f"(at most {config.shutdown_timeout_seconds:g} s); Ctrl-C again stops at once."
    )
    print("\n".join(lines), flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="artifact-gateway",
        description="Artifact ingestion gateway. Configuration comes from GATEWAY_* variables.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    dev = sub.add_parser(
        "dev",
        help="run the gateway on an embedded Postgres and SeaweedFS",
        description=(
            "Run the gateway on an embedded Postgres and SeaweedFS kept in GATEWAY_DATA_DIR "
            "(default ./.gateway-data), with generated keys, and print how to use it."
        ),
        epilog=(
            "It listens on GATEWAY_HOST:GATEWAY_PORT (default 127.0.0.1:8080); when that port "
            "is in use it stops at once and names a free one, e.g. GATEWAY_PORT=8081 "
            "artifact-gateway dev. It writes GATEWAY_DATA_DIR/replica.env: the environment of "
            "an `artifact-gateway serve` beside it. In a terminal it logs lines for people "
            "(GATEWAY_LOG_FORMAT=json for JSON; NO_COLOR for no colours). Ctrl-C lets "
            "requests in flight finish (GATEWAY_SHUTDOWN_TIMEOUT_SECONDS), Ctrl-C again "
            "stops at once."
        ),
    )
    dev.add_argument(
        "--demo",
        action="store_true",
        help="seed the project 'demo' with a session of two runs to browse (once; idempotent)",
    )
    dev.set_defaults(func=cmd_dev)
    serve = sub.add_parser("serve", help="run the gateway on the configured backends")
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help=(
            "worker processes sharing the port (default: the CPUs this process may use: "
            "its CPU affinity, capped by a cgroup CPU quota)"
        ),
    )
    serve.set_defaults(func=cmd_serve)
    gc = sub.add_parser(
        "gc", help="sweep orphaned objects and incomplete uploads; prune rows past their retention"
    )
    gc.add_argument(
        "--grace-seconds",
        type=int,
        default=3600,
        help="leave anything younger than this alone (default 3600)",
    )
    gc.set_defaults(func=cmd_gc)
    sub.add_parser("migrate", help="apply pending schema migrations").set_defaults(func=cmd_migrate)
    token = sub.add_parser("token", help="mint a principal token (development)")
    token.add_argument("--sub", required=True, help="principal id, e.g. user:alice")
    token.add_argument("--scope", default="artifacts:read", help="space-separated scopes")
    token.add_argument(
        "--project", action="append", help="project id (repeatable; default: all projects)"
    )
    token.add_argument(
        "--ttl", type=_positive_seconds, default=3600, help="lifetime in seconds (default 3600)"
    )
    token.set_defaults(func=cmd_token)
    from mobius_artifacts.cli import register_client_commands

    register_client_commands(sub, "artifact-gateway")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":  # pragma: no cover
    main()
