"""``mobius-artifacts``: publish, ls, download, url, rm, quota, watch, completion and mcp.

The same subcommands (but ``completion``) are part of the server's
``artifact-gateway`` command line. They read the same environment as the Python
client (``MOBIUS_ARTIFACTS_URL``, ``MOBIUS_LEASE_TOKEN``, ``MOBIUS_ARTIFACTS_TOKEN``,
``MOBIUS_PROJECT``, ``MOBIUS_ARTIFACTS_CA_BUNDLE``, the proxy variables); ``--url``,
``--token``, ``--lease-token``, ``--project`` and ``--ca-bundle`` override it. These
global options, with ``--retries``, ``--json`` and ``--no-progress``, go before or
after the subcommand. A transfer larger than :data:`PROGRESS_MIN_BYTES` draws a
progress bar on stderr when stderr is a terminal (``--no-progress``: never).

``download`` keeps an existing file named after the artifact unless ``--force``;
``-o -`` writes the bytes to stdout. ``publish`` checks every file before
publishing any. Before each retry of a transient failure a line on stderr says
what failed ("cannot reach the gateway at URL: connection refused (is it
running?)") and when the next attempt is.

Exit status: 0 ok, 1 other errors, 2 usage or configuration, 3 authentication or
authorisation (401/403, lease errors included), 4 quota or size (413),
5 gateway unavailable after retries. An error prints one line,
``mobius-artifacts: <code>: <detail> (request id <id>)`` (``artifact-gateway: …``
there; the request id when the gateway gave one), on stderr; with ``--json``, one
JSON object ``{"code", "detail", "status", "request_id"}`` instead.
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
from typing import TYPE_CHECKING, Any, NoReturn, cast

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


# With --json, errors are JSON objects on stderr (set once the arguments are read).
_json_errors = False


def _fail(
    code: str,
    detail: str,
    status: int,
    prog: str = PROG,
    *,
    http_status: int | None = None,
    request_id: str | None = None,
) -> NoReturn:
    detail = redact(" ".join(detail.split()))
    if _json_errors:
        problem = {"code": code, "detail": detail, "status": http_status, "request_id": request_id}
        line = json.dumps(problem)
    else:
        line = f"{prog}: {code}: {detail}"
        if request_id:
            line += f" (request id {redact(request_id)})"
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    raise SystemExit(status)


def _fail_with(exc: ArtifactError, prog: str = PROG) -> NoReturn:
    _fail(
        exc.code,
        exc.detail,
        exit_status(exc),
        prog,
        http_status=exc.status,
        request_id=exc.request_id,
    )


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _say(line: str) -> None:
    """A line on stderr, drawn above a progress bar rather than through it."""
    from tqdm import tqdm

    tqdm.write(redact(line), file=sys.stderr)


def retry_notice(prog: str, retries: int) -> Callable[[Unavailable, int, float], None]:
    """The ``on_retry`` hook of the command line: one line on stderr before each retry."""

    def notice(error: Unavailable, failures: int, delay: float) -> None:
        if _json_errors:
            return
        rid = f" (request id {error.request_id})" if error.request_id else ""
        _say(
            f"{prog}: {error.detail}{rid}; retrying in {delay:.1f} s "
            f"(retry {failures} of {retries}; --retries 0 stops at once)"
        )

    return notice


# ------------------------------------------------------------------ progress bar


PROGRESS_MIN_BYTES = 4 * 1024 * 1024
"""A transfer draws a progress bar once it is known to be larger than this."""


class ProgressBar:
    """A byte progress bar on stderr (tqdm) for a transfer above :data:`PROGRESS_MIN_BYTES`,
    drawn only when enabled (the command line: when stderr is a terminal)."""

    def __init__(self, label: str, *, enabled: bool) -> None:
        self._label = label
        self._enabled = enabled
        self._bar: tqdm[Any] | None = None

    def __call__(self, done: int, total: int | None) -> None:
        if not self._enabled:
            return
        if self._bar is None:
            if max(total or 0, done) <= PROGRESS_MIN_BYTES:
                return  # a small transfer is over before a bar would say anything
            from tqdm import tqdm

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
                idempotency_key=args.idempotency_key,
                progress=bar,
                artifact_type=args.artifact_type,
            )
        finally:
            bar.close()
        _out(json.dumps(ref.as_dict()))


async def cmd_ls(client: AsyncArtifactClient, args: argparse.Namespace) -> None:
    artifacts = aiter(
        client.list(
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
        )
    )
    # The first page before anything is printed: a failing listing prints no header.
    first = await anext(artifacts, None)
    if not args.json:
        _out(
            TABLE.format(id="ID", size="SIZE", created="CREATED (UTC)", owner="OWNER", name="NAME")
        )
    if first is None:
        return
    shown = 0
    artifact: Artifact | None = first
    while artifact is not None:
        _out(json.dumps(dict(artifact.raw)) if args.json else _row(artifact))
        shown += 1
        if args.limit and shown >= args.limit:
            break
        artifact = await anext(artifacts, None)


def _to_stdout(args: argparse.Namespace) -> bool:
    return args.output is not None and str(args.output) == "-"


async def cmd_download(client: AsyncArtifactClient, args: argparse.Namespace) -> None:
    if _to_stdout(args):
        # bytes only on stdout; verified at the end (a mismatch: exit 1, one line on stderr)
        bar = _progress(args, args.id)
        try:
            await client.download_to(args.id, sys.stdout.buffer, progress=bar)
        finally:
            bar.close()
        return
    dest: Path = args.output or Path.cwd()
    artifact: Artifact | None = None
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
    if not args.json:
        _out(str(path))
        return
    if artifact is None:
        artifact = await client.get(args.id)
    _out(
        json.dumps(
            {"path": str(path), "id": artifact.id, "size": artifact.size, "sha256": artifact.sha256}
        )
    )


def _taken(path: Path) -> bool:
    return path.exists() or path.is_symlink()


async def cmd_url(client: AsyncArtifactClient, args: argparse.Namespace) -> None:
    signed = await client.signed_url(args.id, expires_in=args.expires_in)
    if args.json:
        _out(json.dumps({"url": signed.url, "expires_at": signed.expires_at.isoformat()}))
    else:
        _out(signed.url)


async def cmd_rm(client: AsyncArtifactClient, args: argparse.Namespace) -> None:
    for artifact_id in args.ids:
        await client.delete(artifact_id)
        if args.json:
            _out(json.dumps({"id": artifact_id, "state": "deleted"}))


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


def _client(args: argparse.Namespace, prog: str) -> AsyncArtifactClient:
    from mobius_artifacts.client import AsyncArtifactClient

    return AsyncArtifactClient(
        args.url,
        token=args.token,
        lease_token=args.lease_token,
        project=args.project,
        retries=args.retries,
        ca_bundle=args.ca_bundle,
        on_retry=retry_notice(prog, args.retries),
    )


async def _run(command: Command, args: argparse.Namespace, prog: str) -> None:
    async with _client(args, prog) as client:
        await command(client, args)


def run(command: Command, args: argparse.Namespace, prog: str = PROG) -> None:
    """Run one client command, turning every failure into an exit status and one line."""
    try:
        asyncio.run(_run(command, args, prog))
    except ArtifactError as exc:
        _fail_with(exc, prog)
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
    if args.idempotency_key is not None and len(args.files) > 1:
        raise UsageError("--idempotency-key applies to a single FILE")
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
        _with_defaults(args)
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


# The global options: each parser that takes them (the command line itself and every
# subcommand) leaves them unset unless given, so that one given before the subcommand
# is not reset by the subcommand's default; the defaults are applied at dispatch.
GLOBAL_DEFAULTS: dict[str, Any] = {
    "url": None,
    "token": None,
    "lease_token": None,
    "project": None,
    "retries": 5,
    "ca_bundle": None,
    "json": False,
    "no_progress": False,
}
# what shtab completes for an argument (no import needed to say it)
FILES = {"bash": "_shtab_compgen_files", "zsh": "_files", "tcsh": "f"}
DIRECTORIES = {"bash": "_shtab_compgen_dirs", "zsh": "_files -/", "tcsh": "d"}


def _with_defaults(args: argparse.Namespace) -> None:
    global _json_errors  # noqa: PLW0603 - read by _fail, once per process
    for name, value in GLOBAL_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    _json_errors = _json_errors or bool(args.json)


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """``--url``, ``--token``, … ``--json``, ``--no-progress`` (see :data:`GLOBAL_DEFAULTS`)."""
    unset = argparse.SUPPRESS
    group = parser.add_argument_group("global options (before or after the subcommand)")
    group.add_argument(
        "--url", default=unset, help="gateway base URL (default: $MOBIUS_ARTIFACTS_URL)"
    )
    group.add_argument(
        "--token", default=unset, help="principal token (default: $MOBIUS_ARTIFACTS_TOKEN)"
    )
    group.add_argument(
        "--lease-token", default=unset, help="lease token (default: $MOBIUS_LEASE_TOKEN)"
    )
    group.add_argument(
        "--project",
        default=unset,
        help="project id (default: $MOBIUS_PROJECT, else the lease token's project)",
    )
    group.add_argument(
        "--retries",
        type=_count,
        default=unset,
        help="retries of a transient failure (default 5; each one says so on stderr)",
    )
    ca_bundle = group.add_argument(
        "--ca-bundle",
        metavar="PEM",
        default=unset,
        help="trust these certificate authorities (default: $MOBIUS_ARTIFACTS_CA_BUNDLE, "
        "else the system's)",
    )
    ca_bundle.complete = FILES  # type: ignore[attr-defined]
    group.add_argument(
        "--json",
        action="store_true",
        default=unset,
        help="JSON output: one object per line on stdout; an error as one object "
        '{"code", "detail", "status", "request_id"} on stderr',
    )
    group.add_argument(
        "--no-progress",
        action="store_true",
        default=unset,
        help=f"never draw a progress bar (default: one on a terminal for transfers "
        f"above {PROGRESS_MIN_BYTES // (1024 * 1024)} MiB)",
    )


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    add_global_options(common)
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
    files = publish.add_argument(
        "files", nargs="+", metavar="FILE", help="file to publish ('-': stdin)"
    )
    files.complete = FILES  # type: ignore[attr-defined]
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
    publish.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="the same KEY and bytes publish once (a rerun answers the same artifact; other "
        "bytes: idempotency_conflict); one FILE only (default: a new key per run)",
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
    ls.set_defaults(func=_bind(cmd_ls, prog))

    download = sub.add_parser(
        "download", parents=[common], help="download an artifact, verified by sha256"
    )
    download.add_argument("id", metavar="ID")
    output = download.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="PATH",
        help="file or directory to write (default: the artifact's name, here); '-': stdout, "
        "the bytes only, verified at the end (a mismatch: exit status 1)",
    )
    output.complete = FILES  # type: ignore[attr-defined]
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
    quota.set_defaults(func=_bind(cmd_quota, prog))

    watch = sub.add_parser("watch", parents=[common], help="print events as they arrive")
    watch.add_argument("--after", type=_count, default=0, metavar="N", help="after this seq")
    watch.add_argument("--type", choices=("artifact.created", "artifact.deleted"))
    watch.add_argument("--count", type=_count, metavar="N", help="stop after N events")
    watch.set_defaults(func=_bind(cmd_watch, prog))


def cmd_mcp(args: argparse.Namespace) -> None:
    """``mobius-artifacts mcp``: the MCP server for agents (the ``mcp`` extra)."""
    _with_defaults(args)
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
        _fail_with(exc)
    try:
        asyncio.run(mcp_server.serve(agent, http))
    except KeyboardInterrupt:
        raise SystemExit(130) from None


SHELLS = ("bash", "zsh", "tcsh")


def completion_script(shell: str) -> str:
    """The tab-completion script of ``mobius-artifacts`` for ``shell`` (by shtab)."""
    import shtab

    script: str = shtab.complete(build_parser(), shell=shell)
    return script


def cmd_completion(args: argparse.Namespace) -> None:
    """``mobius-artifacts completion bash|zsh|tcsh``: print the completion script."""
    _with_defaults(args)
    _out(completion_script(args.shell).rstrip("\n"))


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors are one JSON object on stderr with --json."""

    def error(self, message: str) -> NoReturn:
        if _json_errors:
            _fail("usage", f"{self.prog}: {message}", EXIT_USAGE, self.prog)
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Publish, list, download and follow artifacts of the Mobius artifact "
        "gateway. Configuration comes from MOBIUS_* variables; options override them.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    add_global_options(parser)
    # (the subcommands' parsers are Parsers too: argparse makes them of the parser's class)
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", required=True, metavar="COMMAND"),
    )
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
    workspace = mcp.add_argument(
        "--workspace",
        metavar="DIR",
        help="the directory whose files deliver_file may publish, and fetch_artifact "
        "writes into (default: $MOBIUS_WORKSPACE, else the working directory)",
    )
    workspace.complete = DIRECTORIES  # type: ignore[attr-defined]
    mcp.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve streamable HTTP at http://HOST:PORT/mcp instead of stdio "
        "(a loopback address only, e.g. 127.0.0.1:8765; a request whose Host or Origin "
        "names another site is refused)",
    )
    mcp.set_defaults(func=cmd_mcp)
    completion = sub.add_parser(
        "completion",
        help="print a shell's tab-completion script",
        description="Print the tab-completion script for SHELL. bash: "
        'eval "$(mobius-artifacts completion bash)" in ~/.bashrc; zsh: '
        "mobius-artifacts completion zsh > ~/.zfunc/_mobius-artifacts, with ~/.zfunc "
        "in $fpath before compinit.",
    )
    completion.add_argument("shell", choices=SHELLS, metavar="SHELL", help=", ".join(SHELLS))
    completion.set_defaults(func=cmd_completion)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """The ``mobius-artifacts`` console script."""
    global _json_errors  # noqa: PLW0603 - usage errors too are JSON with --json
    words = list(sys.argv[1:] if argv is None else argv)
    _json_errors = "--json" in words[: words.index("--")] if "--" in words else "--json" in words
    args = build_parser().parse_args(words)
    args.func(args)


if __name__ == "__main__":  # pragma: no cover
    main()
