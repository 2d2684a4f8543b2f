"""``mobius-artifacts``: publish, ls, download, url, rm, quota, watch, and mcp.

The same subcommands are part of the server's ``artifact-gateway`` command line.
They read the same environment as the Python client (``MOBIUS_ARTIFACTS_URL``,
``MOBIUS_LEASE_TOKEN``, ``MOBIUS_ARTIFACTS_TOKEN``, ``MOBIUS_PROJECT``,
``MOBIUS_ARTIFACTS_CA_BUNDLE``, the proxy variables); ``--url``, ``--token``,
``--lease-token``, ``--project`` and ``--ca-bundle`` override it. Uploads and
downloads draw a progress bar on stderr when stderr is a terminal and tqdm is
installed (``pip install 'mobius-artifacts[progress]'``).

``download`` keeps an existing file named after the artifact unless ``--force``;
``publish`` checks every file before publishing any.

Exit status: 0 ok, 1 other errors, 2 usage or configuration, 3 authentication or
authorisation (401/403, lease errors included), 4 quota or size (413),
5 gateway unavailable after retries. An error prints one line,
``mobius-artifacts: <code>: <detail>`` (``artifact-gateway: …`` there), on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import stat
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from mobius_artifacts._version import __version__
from mobius_artifacts.errors import (
    ArtifactError,
    ArtifactTooLarge,
    ConfigurationError,
    Forbidden,
    QuotaExceeded,
    Unauthenticated,
    Unavailable,
    redact,
)

if TYPE_CHECKING:
    from tqdm import tqdm

    from mobius_artifacts.client import AsyncArtifactClient
    from mobius_artifacts.values import Artifact, Event, Source

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_QUOTA = 4
EXIT_UNAVAILABLE = 5
PROG = "mobius-artifacts"

Command = Callable[["AsyncArtifactClient", argparse.Namespace], Awaitable[None]]


def exit_status(exc: ArtifactError) -> int:
    """The exit status for a client error (see the module docstring)."""
    if isinstance(exc, ConfigurationError):
        return EXIT_USAGE
    if isinstance(exc, Unavailable):
        return EXIT_UNAVAILABLE
    if isinstance(exc, Unauthenticated | Forbidden) or exc.status in (401, 403):
        return EXIT_AUTH
    if isinstance(exc, QuotaExceeded | ArtifactTooLarge) or exc.status == 413:
        return EXIT_QUOTA
    return EXIT_ERROR


def _fail(code: str, detail: str, status: int, prog: str = PROG) -> NoReturn:
    line = redact(" ".join(f"{prog}: {code}: {detail}".split()))
    sys.stderr.write(line + "\n")
    raise SystemExit(status)


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# ------------------------------------------------------------------ progress bar


class ProgressBar:
    """A byte progress bar on stderr (tqdm), drawn only when stderr is a terminal."""

    def __init__(self, label: str, *, enabled: bool) -> None:
        self._label = label
        self._enabled = enabled
        self._bar: tqdm[Any] | None = None

    def __call__(self, done: int, total: int | None) -> None:
        if not self._enabled:
            return
        if self._bar is None:
            try:
                from tqdm import tqdm
            except ImportError:  # the bar is a nicety, never a requirement
                self._enabled = False
                return
            self._bar = tqdm(
                total=total,
                desc=self._label,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                leave=False,
                dynamic_ncols=True,
            )
        self._bar.total = total
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _progress(args: argparse.Namespace, label: str) -> ProgressBar:
    return ProgressBar(label, enabled=not args.no_progress and sys.stderr.isatty())


# --------------------------------------------------------------------- formatting


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


TABLE = "{id:<30}  {size:>10}  {created:<19}  {owner:<24}  {name}"


def _row(artifact: Artifact) -> str:
    name = _printable(artifact.name) + (" (deleted)" if artifact.deleted else "")
    return TABLE.format(
        id=artifact.id,
        size=human_size(artifact.size),
        created=artifact.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        owner=_printable(f"{artifact.owner.kind}:{artifact.owner.id}")[:24],
        name=name,
    )


def _event_line(event: Event) -> str:
    a = event.artifact
    if a is None:
        what = f"{'?':>10}  ({event.payload_omitted}: the gateway could not serve this event)"
        return f"{event.seq:>8}  {event.type:<17}  {event.artifact_id}  {what}"
    return (
        f"{event.seq:>8}  {event.type:<17}  {a.id}  {human_size(a.size):>10}  {_printable(a.name)}"
    )


# ----------------------------------------------------------------------- commands


async def cmd_publish(client: AsyncArtifactClient, args: argparse.Namespace) -> None:
    for file in args.files:
        source: Source = sys.stdin.buffer if file == "-" else Path(file)
        bar = _progress(args, args.name or Path(file).name)
        try:
            ref = await client.publish(
                source,
                name=args.name,
                description=args.description,
                metadata=args.metadata,
                derived_from=args.derived_from,
                mime=args.mime,
                progress=bar,
                artifact_type=args.artifact_type,
            )
        finally:
            bar.close()
        _out(json.dumps(ref.as_dict()))


async def cmd_ls(client: AsyncArtifactClient, args: argparse.Namespace) -> None:
    if not args.json:
        _out(
            TABLE.format(id="ID", size="SIZE", created="CREATED (UTC)", owner="OWNER", name="NAME")
        )
    shown = 0
    async for artifact in client.list(
        run_id=args.run_id,
        step_id=args.step_id,
        job_id=args.job_id,
        attempt=args.attempt,
        session_id=args.session_id,
        owner=args.owner,
        mime_class=args.mime_class,
        name_prefix=args.name_prefix,
        include_deleted=args.include_deleted,
        page_size=min(args.limit, 200) if args.limit else None,
        artifact_type=args.artifact_type,
    ):
        _out(json.dumps(dict(artifact.raw)) if args.json else _row(artifact))
        shown += 1
        if args.limit and shown >= args.limit:
            break


async def cmd_download(client: AsyncArtifactClient, args: argparse.Namespace) -> None:
    dest: Path = args.output or Path.cwd()
    if not args.force and await asyncio.to_thread(dest.is_dir):
        # The file is named after the artifact: never replace a file that happens
        # to have its name (an explicit ``-o FILE`` is the user's choice).
        artifact = await client.get(args.id)
        dest = dest / artifact.name
        if await asyncio.to_thread(_taken, dest):
            raise Refused(
                "file_exists",
                f"{dest} exists; --force replaces it, -o PATH writes elsewhere",
                EXIT_USAGE,
            )
    bar = _progress(args, args.id)
    try:
        path = await client.download(args.id, dest, progress=bar)
    finally:
        bar.close()
    _out(str(path))


def _taken(path: Path) -> bool:
    return path.exists() or path.is_symlink()


async def cmd_url(client: AsyncArtifactClient, args: argparse.Namespace) -> None:
    signed = await client.signed_url(args.id, expires_in=args.expires_in)
    _out(signed.url)


async def cmd_rm(client: AsyncArtifactClient, args: argparse.Namespace) -> None:
    for artifact_id in args.ids:
        await client.delete(artifact_id)


async def cmd_quota(client: AsyncArtifactClient, args: argparse.Namespace) -> None:
    q = await client.quota()
    if args.json:
        _out(json.dumps({k: getattr(q, k) for k in q.__dataclass_fields__}))
        return
    share = 100.0 * q.used_bytes / q.limit_bytes if q.limit_bytes else 100.0
    _out(
        f"{q.project}: {human_size(q.used_bytes)} of {human_size(q.limit_bytes)} used "
        f"({share:.1f}%), {human_size(q.available_bytes)} free, {q.artifact_count}"
        + ("" if q.limit_artifacts is None else f" of {q.limit_artifacts}")
        + " artifacts"
    )


async def cmd_watch(client: AsyncArtifactClient, args: argparse.Namespace) -> None:
    seen = 0
    async with client.events(after=args.after, type=args.type) as stream:
        async for event in stream:
            _out(json.dumps(dict(event.raw)) if args.json else _event_line(event))
            seen += 1
            if args.count and seen >= args.count:
                return


# ------------------------------------------------------------------------ running


def _client(args: argparse.Namespace) -> AsyncArtifactClient:
    from mobius_artifacts.client import AsyncArtifactClient

    return AsyncArtifactClient(
        args.url,
        token=args.token,
        lease_token=args.lease_token,
        project=args.project,
        retries=args.retries,
        ca_bundle=args.ca_bundle,
    )


async def _run(command: Command, args: argparse.Namespace) -> None:
    async with _client(args) as client:
        await command(client, args)


def run(command: Command, args: argparse.Namespace, prog: str = PROG) -> None:
    """Run one client command, turning every failure into an exit status and one line."""
    try:
        asyncio.run(_run(command, args))
    except ArtifactError as exc:
        _fail(exc.code, exc.detail, exit_status(exc), prog)
    except Refused as exc:
        _fail(exc.code, exc.detail, exc.status, prog)
    except KeyboardInterrupt:
        _fail("interrupted", "stopped by the user", 130, prog)
    except BrokenPipeError:  # e.g. `mobius-artifacts watch | head -1`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(EXIT_OK) from None
    except FileNotFoundError as exc:
        _fail("file_not_found", f"{exc.filename or exc}", EXIT_ERROR, prog)
    except OSError as exc:
        _fail("os_error", f"{type(exc).__name__}: {exc}", EXIT_ERROR, prog)


class Refused(Exception):
    """A command that stops before doing anything: one line and an exit status."""

    def __init__(self, code: str, detail: str, status: int) -> None:
        super().__init__(detail)
        self.code, self.detail, self.status = code, detail, status


class UsageError(Exception):
    """Arguments that argparse accepts but that do not make sense together."""


def _check_publish(args: argparse.Namespace, prog: str) -> None:
    if args.name and len(args.files) > 1:
        raise UsageError("--name applies to a single FILE")
    if "-" in args.files and not args.name:
        raise UsageError("publishing stdin ('-') needs --name")
    if args.files.count("-") > 1:
        raise UsageError("stdin ('-') can be published once")
    # Every file first: a missing one must not leave the others half published.
    for file in args.files:
        if file != "-":
            _check_readable(Path(file), prog)


def _check_readable(path: Path, prog: str) -> None:
    """``path`` is a regular file this process can open, or one line and exit status 1."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        _fail("file_not_found", str(path), EXIT_ERROR, prog)
    except OSError as exc:
        _fail("os_error", f"{path}: {exc.strerror or exc}", EXIT_ERROR, prog)
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        _fail("not_a_file", f"{path} is {kind}", EXIT_ERROR, prog)
    try:
        path.open("rb").close()
    except OSError as exc:
        _fail("os_error", f"{path}: {exc.strerror or exc}", EXIT_ERROR, prog)


def _bind(
    command: Command,
    prog: str,
    check: Callable[[argparse.Namespace, str], None] | None = None,
) -> Callable[[argparse.Namespace], None]:
    def func(args: argparse.Namespace) -> None:
        if check is not None:
            try:
                check(args, prog)
            except UsageError as exc:
                _fail("usage", str(exc), EXIT_USAGE, prog)
        run(command, args, prog)

    return func


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not valid JSON") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("gateway connection (overrides the environment)")
    group.add_argument("--url", help="gateway base URL (default: $MOBIUS_ARTIFACTS_URL)")
    group.add_argument("--token", help="principal token (default: $MOBIUS_ARTIFACTS_TOKEN)")
    group.add_argument("--lease-token", help="lease token (default: $MOBIUS_LEASE_TOKEN)")
    group.add_argument(
        "--project",
        help="project id (default: $MOBIUS_PROJECT, else the lease token's project)",
    )
    group.add_argument(
        "--retries",
        type=_count,
        default=5,
        help="retries of a transient failure (default 5)",
    )
    group.add_argument(
        "--ca-bundle",
        metavar="PEM",
        help="trust these certificate authorities (default: $MOBIUS_ARTIFACTS_CA_BUNDLE, "
        "else the system's)",
    )
    group.add_argument("--no-progress", action="store_true", help="never draw a progress bar")
    return common


def register_client_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], prog: str = PROG
) -> None:
    """Add publish, ls, download, url, rm, quota and watch to a command line.

    ``prog`` names the command in error lines (``<prog>: <code>: <detail>``).
    """
    common = _common()

    publish = sub.add_parser(
        "publish",
        parents=[common],
        help="publish files; prints each artifact reference as a JSON line",
    )
    publish.add_argument("files", nargs="+", metavar="FILE", help="file to publish ('-': stdin)")
    publish.add_argument("--name", help="artifact name (default: the file name; one FILE only)")
    publish.add_argument("--description", help="free text, at most 4 KiB")
    publish.add_argument("--metadata", type=_json_object, help="a JSON object, at most 16 KiB")
    publish.add_argument(
        "--derived-from", action="append", metavar="ID", help="source artifact id (repeatable)"
    )
    publish.add_argument("--mime", help="media type (default: guessed by the gateway)")
    publish.add_argument(
        "--artifact-type", metavar="TYPE", help="a label such as report, plan, dataset or log"
    )
    publish.set_defaults(func=_bind(cmd_publish, prog, _check_publish))

    ls = sub.add_parser("ls", parents=[common], help="list artifacts, newest first")
    ls.add_argument("--run-id")
    ls.add_argument("--step-id")
    ls.add_argument("--job-id")
    ls.add_argument("--attempt", type=_count)
    ls.add_argument("--session-id")
    ls.add_argument("--owner", help="kind:id, e.g. user:alice or run:run_42")
    ls.add_argument("--mime-class", choices=("image", "html", "code", "text", "other"))
    ls.add_argument("--name-prefix")
    ls.add_argument("--artifact-type", metavar="TYPE")
    ls.add_argument("--include-deleted", action="store_true", help="show tombstones too")
    ls.add_argument("--limit", type=_count, help="show at most this many")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(func=_bind(cmd_ls, prog))

    download = sub.add_parser(
        "download", parents=[common], help="download an artifact, verified by sha256"
    )
    download.add_argument("id", metavar="ID")
    download.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="PATH",
        help="file or directory to write (default: the artifact's name, here)",
    )
    download.add_argument(
        "--force",
        action="store_true",
        help="replace a file of the artifact's name (without -o FILE, an existing one is kept)",
    )
    download.set_defaults(func=_bind(cmd_download, prog))

    url = sub.add_parser("url", parents=[common], help="mint a short-lived signed URL")
    url.add_argument("id", metavar="ID")
    url.add_argument("--expires-in", type=_count, default=300, metavar="N", help="seconds (1-3600)")
    url.set_defaults(func=_bind(cmd_url, prog))

    rm = sub.add_parser("rm", parents=[common], help="delete artifacts (a tombstone remains)")
    rm.add_argument("ids", nargs="+", metavar="ID")
    rm.set_defaults(func=_bind(cmd_rm, prog))

    quota = sub.add_parser("quota", parents=[common], help="the project's quota")
    quota.add_argument("--json", action="store_true")
    quota.set_defaults(func=_bind(cmd_quota, prog))

    watch = sub.add_parser("watch", parents=[common], help="print events as they arrive")
    watch.add_argument("--after", type=_count, default=0, metavar="N", help="after this seq")
    watch.add_argument("--type", choices=("artifact.created", "artifact.deleted"))
    watch.add_argument("--count", type=_count, metavar="N", help="stop after N events")
    watch.add_argument("--json", action="store_true", help="one JSON object per line")
    watch.set_defaults(func=_bind(cmd_watch, prog))


def cmd_mcp(args: argparse.Namespace) -> None:
    """``mobius-artifacts mcp``: the MCP server for agents (the ``mcp`` extra)."""
    try:
        from mobius_artifacts import mcp_server
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in ("mcp", "mcp_types", "pydantic"):
            raise
        _fail(
            "mcp_unavailable",
            "the MCP server needs the mcp extra: pip install 'mobius-artifacts[mcp]'",
            EXIT_USAGE,
        )
    try:
        agent = mcp_server.agent_from(
            url=args.url,
            token=args.token,
            lease_token=args.lease_token,
            project=args.project,
            retries=args.retries,
            ca_bundle=args.ca_bundle,
            workspace=args.workspace,
        )
        http = mcp_server.parse_http(args.http) if args.http else None
    except ArtifactError as exc:
        _fail(exc.code, exc.detail, exit_status(exc))
    try:
        asyncio.run(mcp_server.serve(agent, http))
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Publish, list, download and follow artifacts of the Mobius artifact "
        "gateway. Configuration comes from MOBIUS_* variables; options override them.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_client_commands(sub, PROG)
    mcp = sub.add_parser(
        "mcp",
        parents=[_common()],
        help="serve the Model Context Protocol for agents (stdio; pip install "
        "'mobius-artifacts[mcp]')",
        description="A Model Context Protocol server with the tools deliver_file, "
        "publish_text, list_artifacts, get_artifact, read_artifact and fetch_artifact, and "
        "the resources "
        "artifact://{project}/{id}. It speaks over stdio unless --http is given.",
    )
    mcp.add_argument(
        "--workspace",
        metavar="DIR",
        help="the directory whose files deliver_file may publish, and fetch_artifact "
        "writes into (default: $MOBIUS_WORKSPACE, else the working directory)",
    )
    mcp.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve streamable HTTP at http://HOST:PORT/mcp instead of stdio "
        "(a loopback address only, e.g. 127.0.0.1:8765; a request whose Host or Origin "
        "names another site is refused)",
    )
    mcp.set_defaults(func=cmd_mcp)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """The ``mobius-artifacts`` console script."""
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":  # pragma: no cover
    main()
