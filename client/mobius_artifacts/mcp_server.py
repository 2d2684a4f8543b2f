"""``mobius-artifacts mcp``: a Model Context Protocol server that lets an agent publish
and read artifacts (``pip install 'mobius-artifacts[mcp]'``).

It speaks MCP over stdio (or streamable HTTP on the loopback interface with
``--http 127.0.0.1:PORT``, checking every request's Host and Origin; see
:mod:`mobius_artifacts.mcp_transport`) and is configured from the client's environment:
``MOBIUS_ARTIFACTS_URL``, ``MOBIUS_LEASE_TOKEN`` and/or ``MOBIUS_ARTIFACTS_TOKEN``,
``MOBIUS_PROJECT``, plus ``MOBIUS_WORKSPACE`` (default: the working directory),
the only directory whose files ``deliver_file`` publishes.

Tools: ``deliver_file``, ``publish_text`` (publish with the lease, else the
principal token), ``list_artifacts``, ``get_artifact``, ``read_artifact`` and
``fetch_artifact`` (read with the principal token; ``fetch_artifact`` writes the
content into the workspace, verified by sha256). Each has a title, annotations
(read-only, destructive, idempotent, open-world hints) and, but ``read_artifact``,
an output schema its structured content follows. ``deliver_file`` and
``fetch_artifact`` report progress when the caller asks for it (a
``progressToken``): at most one notification per MiB moved or per quarter second.
A refused path or an error answer of the gateway is a tool error (``isError``)
whose text starts with the stable code
(``outside_workspace``, ``quota_exceeded``, ``lease_inactive`` …) and goes on with
the detail, every URL's credentials redacted; the server itself keeps running,
and answers every request (one it cannot read with a JSON-RPC error).

Resources: the template ``artifact://{project}/{id}``, readable with
``resources/read`` — text (served inline by the gateway as UTF-8) up to 1 MiB,
inline images up to 5 MiB and any other content up to 1 MiB, as a blob; larger
is an error that points at ``read_artifact`` for a signed URL. ``resources/list``
lists the current run's artifacts when a lease is configured: a lease token
names its project but not its run, so the run is learned from the lineage of the
first artifact this server publishes under the lease (read with the principal
token), and the list is then every artifact of that run, newest first (at most
100). Until then, or without a principal token, it lists what this server
published.
"""

# No ``from __future__ import annotations``: the SDK reads the tools' annotations,
# some of which are built inside build().
import asyncio
import base64
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Final
from urllib.parse import quote, unquote, urlsplit

from mcp import types
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from pydantic import AnyUrl, BaseModel, ConfigDict, Field

from mobius_artifacts._version import __version__
from mobius_artifacts.client import AsyncArtifactClient
from mobius_artifacts.errors import (
    ArtifactDeleted,
    ArtifactError,
    ArtifactTooLarge,
    ConfigurationError,
    NotFound,
    redact,
)
from mobius_artifacts.mcp_transport import configure_logging, is_loopback, run_http, run_stdio
from mobius_artifacts.values import Artifact, ArtifactRef
from mobius_artifacts.workspace import ENV_WORKSPACE, Workspace, WorkspaceError

logger = logging.getLogger(__name__)

SCHEME: Final = "artifact"
URI_TEMPLATE: Final = "artifact://{project}/{id}"
READ_LIMIT: Final = 1024 * 1024
"""Text returned as text, and other content as a blob by ``resources/read``, at most."""
IMAGE_LIMIT: Final = 5 * 1024 * 1024
"""An inline image returned as an image block or a blob, at most."""
SIGNED_URL_SECONDS: Final = 300
RESOURCE_LIST_LIMIT: Final = 100
PROGRESS_BYTES: Final = 1024 * 1024
PROGRESS_SECONDS: Final = 0.25
"""A progress notification goes out when this many more bytes moved, or this long passed."""
SLUG: Final = r"^[a-z0-9][a-z0-9._-]{0,63}$"


def artifact_uri(project: str, artifact_id: str) -> str:
    return f"{SCHEME}://{quote(project, safe='')}/{quote(artifact_id, safe='')}"


# ------------------------------------------------------------------ tool results


class Delivered(BaseModel):
    """The reference of a published artifact."""

    id: str = Field(description="The artifact id (art_…).")
    project: str = Field(description="The project the artifact belongs to.")
    name: str = Field(description="The artifact's name.")
    mime: str = Field(description="Its media type.")
    size: int = Field(description="Its size in bytes.")
    sha256: str = Field(description="The sha256 of its bytes, as the gateway computed it.")
    uri: str = Field(
        description="artifact://{project}/{id}: read it with read_artifact or resources/read."
    )
    download_url: str | None = Field(
        description="A signed URL that downloads the content without a credential until "
        "download_url_expires_at; null when the server has no read token."
    )
    download_url_expires_at: str | None = Field(description="When download_url stops working.")


class OwnerInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    kind: str = Field(description="run, user, agent or service.")
    id: str = Field(description="The run id, or the principal's id.")


class LineageInfo(BaseModel):
    """Where a run's artifact comes from: the job's claim."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    step_id: str
    job_id: str
    attempt: int
    worker_session_id: str
    session_id: str | None = None


class ArtifactInfo(BaseModel):
    """An artifact as the gateway describes it (fields it adds later pass through)."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(description="The artifact id (art_…).")
    project: str
    name: str
    mime: str = Field(description="Its media type.")
    size: int = Field(description="Its size in bytes.")
    sha256: str
    state: str = Field(description="available or deleted.")
    created_at: str = Field(description="RFC 3339.")
    deleted_at: str | None = None
    owner: OwnerInfo
    lineage: LineageInfo | None = Field(description="The run's lineage; null for a principal's.")
    created_by: str | None = None
    description: str | None = None
    metadata: dict[str, Any] = Field(description="The JSON object of facts given at publish.")
    derived_from: list[str] = Field(description="The ids of the artifacts it was made from.")
    artifact_type: str | None = Field(default=None, description="report, plan, log …")


class Listing(BaseModel):
    """Artifacts, newest first."""

    items: list[ArtifactInfo] = Field(description="The artifacts, newest first.")
    has_more: bool = Field(description="More artifacts match than limit allowed to return.")


class Fetched(BaseModel):
    """An artifact written into the workspace, its sha256 verified."""

    path: str = Field(description="The file's absolute path, inside the workspace.")
    size: int = Field(description="Its size in bytes.")
    sha256: str = Field(description="The sha256 of its bytes, the gateway's record.")
    id: str = Field(description="The artifact id (art_…).")
    name: str = Field(description="The artifact's name.")
    mime: str = Field(description="Its media type.")


class ProgressReport:
    """The client's ``progress(done, total)`` as MCP progress notifications.

    One goes out when ``PROGRESS_BYTES`` more moved or ``PROGRESS_SECONDS`` passed
    since the last, and at the end; the value only ever grows (after a retry it
    waits until the transfer passes it again). Without the caller's
    ``progressToken`` the SDK sends nothing.
    """

    def __init__(self, ctx: Context[Any, Any], what: str) -> None:
        self.ctx = ctx
        self.what = what
        self.loop = asyncio.get_running_loop()
        self.sent = 0
        self.sent_at = self.loop.time()
        self.latest: tuple[int, int | None] | None = None
        self.task: asyncio.Task[None] | None = None

    def __call__(self, done: int, total: int | None) -> None:
        if done <= self.sent:
            return
        now = self.loop.time()
        final = total is not None and done >= total
        if (
            not final
            and done - self.sent < PROGRESS_BYTES
            and now - self.sent_at < PROGRESS_SECONDS
        ):
            return
        self.sent, self.sent_at = done, now
        self.latest = (done, total)
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self._send())

    async def _send(self) -> None:
        while self.latest is not None:
            done, total = self.latest
            self.latest = None
            shown = f"{done} of {total} bytes" if total is not None else f"{done} bytes"
            try:
                await self.ctx.report_progress(done, total, f"{self.what}: {shown}")
            except Exception as exc:  # the transfer goes on without its reports
                logger.debug("a progress notification was not sent: %s", exc)
                return

    async def aclose(self) -> None:
        """Wait for the notifications under way (the last one included)."""
        if self.task is not None:
            await self.task


def failure(
    code: str, detail: str, *, status: int | None = None, request_id: str | None = None
) -> types.CallToolResult:
    """A tool error: the stable code first, then what happened.

    Credentials in a URL are redacted, and what is not text (a file name's
    undecodable bytes, kept as lone surrogates) is spelled as an escape, so the
    error can always be sent.
    """
    text = f"{code}: {detail}"
    notes = [f"HTTP {status}" if status else "", f"request id {request_id}" if request_id else ""]
    if any(notes):
        text += " (" + ", ".join(n for n in notes if n) + ")"
    text = redact(text).encode("utf-8", "backslashreplace").decode("utf-8")
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)


async def guarded(work: Awaitable[types.CallToolResult]) -> types.CallToolResult:
    """The tool's result, or its failure as a tool error (never a crashed server)."""
    try:
        return await work
    except WorkspaceError as exc:
        return failure(exc.code, exc.detail)
    except ArtifactError as exc:
        return failure(exc.code, exc.detail, status=exc.status, request_id=exc.request_id)
    except OSError as exc:
        return failure("os_error", f"{type(exc).__name__}: {exc.strerror or exc}")


def _json_text(value: Any) -> types.TextContent:
    return types.TextContent(text=json.dumps(value, ensure_ascii=False, indent=2))


def _link(
    project: str, artifact: Artifact | ArtifactRef, description: str | None
) -> types.ResourceLink:
    return types.ResourceLink(
        uri=artifact_uri(project, artifact.id),
        name=artifact.name,
        mime_type=artifact.mime,
        description=description,
        size=artifact.size,
    )


# ------------------------------------------------------------------------ server


@dataclass
class Agent:
    """What the tools and resources share: the client, the workspace, what was published."""

    client: AsyncArtifactClient
    workspace: Workspace
    run_id: str | None = None
    published: list[types.Resource] = field(default_factory=list)

    @property
    def project(self) -> str:
        return self.client.project

    @property
    def can_read(self) -> bool:
        return self.client.token is not None

    def needs_reader(self) -> types.CallToolResult | None:
        if self.can_read:
            return None
        return failure(
            "configuration_error",
            "reading artifacts needs a principal token with artifacts:read: set "
            "MOBIUS_ARTIFACTS_TOKEN in the MCP server's environment",
        )

    # -- publishing

    async def delivered(self, ref: ArtifactRef, description: str | None) -> types.CallToolResult:
        """The result of a publish: the reference, a resource link, a signed URL."""
        uri = artifact_uri(ref.project, ref.id)
        url = expires = None
        notes: list[types.ContentBlock] = []
        if self.can_read:
            try:
                signed = await self.client.signed_url(ref.id, SIGNED_URL_SECONDS)
            except ArtifactError as exc:  # published all the same: say so, do not fail
                notes.append(types.TextContent(text=f"no download URL: {exc.code}: {exc.detail}"))
            else:
                url, expires = signed.url, signed.expires_at.isoformat()
        result = Delivered(
            **ref.as_dict(), uri=uri, download_url=url, download_url_expires_at=expires
        ).model_dump(mode="json")
        link = _link(ref.project, ref, description)
        self.published.insert(
            0,
            types.Resource(
                uri=link.uri,
                name=link.name,
                mime_type=link.mime_type,
                description=link.description,
                size=link.size,
            ),
        )
        # the newest ones, and the first (whose lineage names the run)
        if len(self.published) > RESOURCE_LIST_LIMIT:
            del self.published[RESOURCE_LIST_LIMIT - 1 : -1]
        return types.CallToolResult(
            content=[_json_text(result), link, *notes], structured_content=result
        )

    async def deliver_file(
        self,
        file_path: str,
        *,
        description: str | None,
        name: str | None,
        artifact_type: str | None,
        metadata: dict[str, Any] | None,
        ctx: Context[Any, Any] | None = None,
    ) -> types.CallToolResult:
        resolved, fh = await asyncio.to_thread(self.workspace.open, file_path)
        report = ProgressReport(ctx, f"publishing {resolved.name}") if ctx is not None else None
        try:
            name = name or resolved.name
            if not _is_text(name):  # a file name of bytes that are not UTF-8
                shown = name.encode("utf-8", "backslashreplace").decode("utf-8")
                raise WorkspaceError(
                    "invalid_name",
                    f"the file's name '{shown}' is not valid UTF-8: give the artifact a name",
                )
            ref = await self.client.publish(
                fh,
                name=name,
                description=description,
                metadata=metadata,
                artifact_type=artifact_type,
                progress=report,
            )
        finally:
            await asyncio.to_thread(fh.close)
            if report is not None:
                await report.aclose()
        return await self.delivered(ref, description)

    async def publish_text(
        self,
        name: str,
        content: str,
        *,
        mime: str | None,
        description: str | None,
        artifact_type: str | None,
        metadata: dict[str, Any] | None,
    ) -> types.CallToolResult:
        ref = await self.client.publish_text(
            name,
            content,
            mime=mime,
            description=description,
            metadata=metadata,
            artifact_type=artifact_type,
        )
        return await self.delivered(ref, description)

    # -- reading

    async def list_artifacts(self, limit: int, **filters: Any) -> types.CallToolResult:
        listing = self.client.list(page_size=min(limit + 1, 200), **filters)
        items = await _take(listing, limit + 1)
        shown = items[:limit]
        result = Listing(
            items=[ArtifactInfo.model_validate(dict(a.raw)) for a in shown],
            has_more=len(items) > limit,
        ).model_dump(mode="json")
        links = [_link(self.project, a, a.description) for a in shown]
        return types.CallToolResult(content=[_json_text(result), *links], structured_content=result)

    async def get_artifact(self, artifact_id: str) -> types.CallToolResult:
        artifact = await self.client.get(artifact_id)
        data = ArtifactInfo.model_validate(dict(artifact.raw)).model_dump(mode="json")
        return types.CallToolResult(
            content=[_json_text(data), _link(self.project, artifact, artifact.description)],
            structured_content=data,
        )

    async def fetch_artifact(
        self,
        artifact_id: str,
        file_path: str | None,
        *,
        overwrite: bool,
        ctx: Context[Any, Any] | None = None,
    ) -> types.CallToolResult:
        artifact = await self.client.get(artifact_id)
        if artifact.deleted:
            raise ArtifactDeleted(f"artifact {artifact.id} was deleted", status=410)
        placement = await asyncio.to_thread(
            self.workspace.place, file_path, artifact.name, overwrite=overwrite
        )
        report = ProgressReport(ctx, f"fetching {artifact.name}") if ctx is not None else None
        try:
            await self.client.download_to(artifact, placement.file, progress=report)
            await asyncio.to_thread(placement.commit)
        except BaseException:
            await asyncio.to_thread(placement.discard)
            raise
        finally:
            if report is not None:
                await report.aclose()
        result = Fetched(
            path=str(placement.path),
            size=artifact.size,
            sha256=artifact.sha256,
            id=artifact.id,
            name=artifact.name,
            mime=artifact.mime,
        ).model_dump(mode="json")
        return types.CallToolResult(
            content=[_json_text(result), _link(self.project, artifact, artifact.description)],
            structured_content=result,
        )

    async def read_artifact(self, artifact_id: str) -> types.CallToolResult:
        artifact = await self.client.get(artifact_id)
        if artifact.deleted:
            raise ArtifactDeleted(f"artifact {artifact.id} was deleted", status=410)
        image = artifact.mime.startswith("image/")
        limit = IMAGE_LIMIT if image else READ_LIMIT
        if artifact.size <= limit:
            content = await self.client.read_content(artifact, max_bytes=limit)
            if content.is_text:
                return types.CallToolResult(content=[types.TextContent(text=content.text())])
            if content.is_image:
                data = base64.b64encode(content.data).decode("ascii")
                return types.CallToolResult(
                    content=[types.ImageContent(data=data, mime_type=artifact.mime)]
                )
            why = f"not text nor an inline image ({artifact.mime}, {artifact.size} bytes)"
        else:
            why = f"{artifact.size} bytes, more than the {limit} shown here"
        signed = await self.client.signed_url(artifact.id, SIGNED_URL_SECONDS)
        text = (
            f"{artifact.name} is {why}. Download it without a credential until "
            f"{signed.expires_at.isoformat()}: {signed.url}"
        )
        return types.CallToolResult(
            content=[
                types.TextContent(text=text),
                _link(self.project, artifact, artifact.description),
            ],
            structured_content={
                "download_url": signed.url,
                "download_url_expires_at": signed.expires_at.isoformat(),
            },
        )

    # -- resources

    async def resources(self) -> list[types.Resource]:
        """The current run's artifacts (see the module docstring), else what was published."""
        if self.client.lease_token is None or not self.can_read:
            return list(self.published)
        try:
            if self.run_id is None and self.published:
                first = await self.client.get(_id(self.published[-1]))
                self.run_id = first.lineage.run_id if first.lineage else None
            if self.run_id is None:
                return list(self.published)
            listing = self.client.list(run_id=self.run_id, page_size=RESOURCE_LIST_LIMIT)
            return [
                types.Resource(
                    uri=artifact_uri(self.project, artifact.id),
                    name=artifact.name,
                    mime_type=artifact.mime,
                    description=artifact.description,
                    size=artifact.size,
                )
                for artifact in await _take(listing, RESOURCE_LIST_LIMIT)
            ]
        except ArtifactError as exc:
            logger.warning("listing the run's artifacts failed: %s", exc)
            return list(self.published)

    async def read(self, uri: str) -> ReadResourceContents:
        parts = urlsplit(uri)
        project, artifact_id = unquote(parts.netloc), unquote(parts.path.lstrip("/"))
        if parts.scheme != SCHEME or not artifact_id or "/" in artifact_id:
            raise ResourceNotFoundError(f"not an artifact URI ({URI_TEMPLATE}): {uri}")
        if project != self.project:
            raise ResourceNotFoundError(
                f"this server reads artifacts of project {self.project!r} only"
            )
        if not self.can_read:
            raise ResourceError(
                "configuration_error: reading artifacts needs MOBIUS_ARTIFACTS_TOKEN"
            )
        try:
            artifact = await self.client.get(artifact_id)
            image = artifact.mime.startswith("image/")
            limit = IMAGE_LIMIT if image else READ_LIMIT
            content = await self.client.read_content(artifact, max_bytes=limit)
        except NotFound as exc:
            raise ResourceNotFoundError(f"{exc.code}: {exc.detail}") from None
        except ArtifactTooLarge as exc:
            raise ResourceError(
                f"too_large: {exc.detail}; read_artifact gives a download URL instead"
            ) from None
        except ArtifactError as exc:
            raise ResourceError(f"{exc.code}: {exc.detail}") from None
        if content.is_text:
            return ReadResourceContents(content=content.text(), mime_type=artifact.mime)
        if not content.is_image and artifact.size > READ_LIMIT:  # an image type, not an image
            raise ResourceError(
                f"too_large: {artifact.size} bytes of {artifact.mime}, more than the "
                f"{READ_LIMIT} returned here; read_artifact gives a download URL instead"
            )
        return ReadResourceContents(content=content.data, mime_type=artifact.mime)


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def _take(listing: AsyncIterator[Artifact], n: int) -> list[Artifact]:
    """The first ``n`` artifacts of a listing, which is then closed."""
    items: list[Artifact] = []
    try:
        async for artifact in listing:
            items.append(artifact)
            if len(items) >= n:
                break
    finally:
        aclose = getattr(listing, "aclose", None)
        if aclose is not None:
            await aclose()
    return items


def _id(resource: types.Resource) -> str:
    return unquote(urlsplit(str(resource.uri)).path.lstrip("/"))


class ArtifactServer(MCPServer[Any]):
    """An :class:`MCPServer` whose resources are the project's artifacts."""

    def __init__(self, agent: Agent, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.agent = agent

    async def list_resources(self) -> list[types.Resource]:
        return [*await super().list_resources(), *await self.agent.resources()]

    async def list_resource_templates(self) -> list[types.ResourceTemplate]:
        template = types.ResourceTemplate(
            uri_template=URI_TEMPLATE,
            name="artifact",
            title="Artifact",
            description=f"An artifact of project {self.agent.project}: its text (up to 1 MiB), "
            "inline image (up to 5 MiB) or other content (up to 1 MiB, as a blob).",
        )
        return [*await super().list_resource_templates(), template]

    async def read_resource(
        self, uri: AnyUrl | str, context: Context[Any, Any] | None = None
    ) -> Iterable[ReadResourceContents] | types.InputRequiredResult:
        if urlsplit(str(uri)).scheme == SCHEME:
            return [await self.agent.read(str(uri))]
        return await super().read_resource(uri, context)


# ---------------------------------------------------------------- the tool schemas

Description = Annotated[
    str | None,
    Field(
        description="What the artifact is and why it matters, in a sentence or two "
        "(at most 4 KiB). People and other agents read it."
    ),
]
ArtifactType = Annotated[
    str | None,
    Field(
        description="A label for the kind of artifact: report, plan, dataset, log, image … "
        "(lower case letters, digits, '.', '_' or '-'; at most 64).",
        pattern=SLUG,
    ),
]
Metadata = Annotated[
    dict[str, Any] | None,
    Field(description="Any JSON object of facts about the artifact (at most 16 KiB)."),
]
ArtifactId = Annotated[str, Field(description="The artifact id (art_…).")]


def hints(title: str, kind: tuple[bool, bool, bool]) -> types.ToolAnnotations:
    """A tool's title and behaviour (read-only, destructive, idempotent), as
    ToolAnnotations: every tool works on the project's artifacts and the workspace
    only (a closed world)."""
    read_only, destructive, idempotent = kind
    return types.ToolAnnotations(
        title=title,
        read_only_hint=read_only,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=False,
    )


READING: Final = (True, False, True)
PUBLISHING: Final = (False, False, False)
FETCHING: Final = (False, True, True)
"""fetch_artifact replaces a file of the workspace when asked to (``overwrite``)."""


def build(agent: Agent) -> ArtifactServer:
    """The MCP server of ``agent``: its six tools, its template and its resources."""
    root = agent.workspace.root
    server = ArtifactServer(
        agent,
        name="mobius-artifacts",
        title="Mobius artifacts",
        version=__version__,
        instructions=(
            f"Publish the files you produce as artifacts of project {agent.project} with "
            f"deliver_file (files inside the workspace {root} only) or small texts with "
            "publish_text; describe each one. Find artifacts with list_artifacts and "
            "get_artifact, read them with read_artifact, download one into the workspace "
            "with fetch_artifact. A tool error starts with a stable "
            "code (quota_exceeded, lease_inactive, outside_workspace …)."
        ),
        log_level="WARNING",
    )

    def tool(
        name: str, title: str, kind: tuple[bool, bool, bool], **options: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return server.tool(name=name, title=title, annotations=hints(title, kind), **options)

    @tool("deliver_file", "Deliver a file", PUBLISHING)
    async def deliver_file(
        filePath: Annotated[  # the name agents know
            str,
            Field(
                description=f"The file to publish: a path relative to the workspace {root}, "
                "or an absolute path inside it. Files outside the workspace (symbolic links "
                "are followed), files with more than one hard link (copy them first) and "
                "directories are refused."
            ),
        ],
        *,
        description: Description = None,
        name: Annotated[
            str | None,
            Field(description="The artifact's name (default: the file's name)."),
        ] = None,
        artifact_type: ArtifactType = None,
        metadata: Metadata = None,
        ctx: Context[Any, Any] | None = None,
    ) -> Annotated[types.CallToolResult, Delivered]:
        """Publish a file of the workspace as an artifact, in one call, and carry on.

        The file is streamed to the gateway, which verifies its sha256 and charges it to
        the project's quota; published under the job's lease, it carries the run's lineage.
        Returns the artifact's reference, a resource link (artifact://…) and, when the
        server can read, a download URL valid for a few minutes. Reports progress when
        asked to (a progressToken).
        """
        return await guarded(
            agent.deliver_file(
                filePath,
                description=description,
                name=name,
                artifact_type=artifact_type,
                metadata=metadata,
                ctx=ctx,
            )
        )

    @tool("publish_text", "Publish a text", PUBLISHING)
    async def publish_text(
        name: Annotated[
            str, Field(description="The artifact's name, with an extension: plan.md, notes.txt …")
        ],
        content: Annotated[str, Field(description="The text to publish (at most 1 MiB of UTF-8).")],
        *,
        mime: Annotated[
            str | None,
            Field(description="Its media type (default: text/markdown)."),
        ] = None,
        description: Description = None,
        artifact_type: ArtifactType = None,
        metadata: Metadata = None,
    ) -> Annotated[types.CallToolResult, Delivered]:
        """Publish a small text (a plan, notes, a summary) as an artifact, without a file.

        Same result as deliver_file. For more than 1 MiB, write a file and deliver it.
        """
        return await guarded(
            agent.publish_text(
                name,
                content,
                mime=mime,
                description=description,
                artifact_type=artifact_type,
                metadata=metadata,
            )
        )

    @tool("list_artifacts", "List artifacts", READING)
    async def list_artifacts(
        *,
        run_id: Annotated[str | None, Field(description="Only this run's artifacts.")] = None,
        step_id: Annotated[str | None, Field(description="Only this step's artifacts.")] = None,
        session_id: Annotated[
            str | None, Field(description="Only artifacts of this session.")
        ] = None,
        artifact_type: Annotated[
            str | None, Field(description="Only artifacts with this label (report, plan …).")
        ] = None,
        mime_class: Annotated[
            str | None,
            Field(
                description="Only this kind of content: image, html, code, text or other.",
                pattern="^(image|html|code|text|other)$",
            ),
        ] = None,
        name_prefix: Annotated[
            str | None, Field(description="Only artifacts whose name starts with this.")
        ] = None,
        limit: Annotated[
            int, Field(description="At most this many artifacts (1-100).", ge=1, le=100)
        ] = 20,
    ) -> Annotated[types.CallToolResult, Listing]:
        """List the project's artifacts, newest first, optionally filtered."""
        refused = agent.needs_reader()
        if refused is not None:
            return refused
        filters = {
            "run_id": run_id,
            "step_id": step_id,
            "session_id": session_id,
            "artifact_type": artifact_type,
            "mime_class": mime_class,
            "name_prefix": name_prefix,
        }
        return await guarded(agent.list_artifacts(limit, **filters))

    @tool("get_artifact", "Describe an artifact", READING)
    async def get_artifact(id: ArtifactId) -> Annotated[types.CallToolResult, ArtifactInfo]:
        """Describe one artifact: name, media type, size, sha256, description, metadata,
        lineage (run, step, job, attempt), owner, type, state."""
        return agent.needs_reader() or await guarded(agent.get_artifact(id))

    @tool("read_artifact", "Read an artifact", READING, structured_output=False)
    async def read_artifact(id: ArtifactId) -> types.CallToolResult:
        """Read an artifact: its text (text artifacts up to 1 MiB), the image itself (inline
        images up to 5 MiB), otherwise a resource link and a download URL valid for a few
        minutes."""
        return agent.needs_reader() or await guarded(agent.read_artifact(id))

    @tool("fetch_artifact", "Fetch an artifact", FETCHING)
    async def fetch_artifact(
        id: ArtifactId,
        *,
        filePath: Annotated[
            str | None,
            Field(
                description=f"Where to write it: a path relative to the workspace {root}, or "
                "an absolute path inside it (default: the artifact's name in the workspace; "
                "an existing directory receives the artifact's name in it). Paths that "
                "resolve outside the workspace (symbolic links are followed) are refused."
            ),
        ] = None,
        overwrite: Annotated[
            bool, Field(description="Replace an existing file there (default: refuse).")
        ] = False,
        ctx: Context[Any, Any] | None = None,
    ) -> Annotated[types.CallToolResult, Fetched]:
        """Download an artifact into the workspace, verified by sha256, to work on it.

        The bytes go to a temporary file beside the destination, which takes its name
        only once their sha256 matches the gateway's record (file_exists when a file
        is there, unless overwrite). Returns the path, size and sha256. Reports progress
        when asked to (a progressToken).
        """
        return agent.needs_reader() or await guarded(
            agent.fetch_artifact(id, filePath, overwrite=overwrite, ctx=ctx)
        )

    return server


# ----------------------------------------------------------------------- running


def parse_http(value: str) -> tuple[str, int]:
    """``HOST:PORT`` of the streamable HTTP transport, on a loopback address only."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not re.fullmatch(r"[0-9]{1,5}", port) or not 0 < int(port) < 65536:
        raise ConfigurationError(f"--http takes HOST:PORT, e.g. 127.0.0.1:8765 (got {value!r})")
    if not is_loopback(host):
        raise ConfigurationError(
            "the MCP server has no authentication of its own and holds the job's credentials: "
            f"it listens on a loopback address only (got {host!r})"
        )
    return host, int(port)


async def serve(agent: Agent, http: tuple[str, int] | None) -> None:
    """Run the server until its client goes away (stdio) or it is stopped (HTTP)."""
    configure_logging()
    server = build(agent)
    try:
        if http is None:
            await run_stdio(server)
        else:
            await run_http(server, *http)
    finally:
        await agent.client.close()


def agent_from(
    *,
    url: str | None,
    token: str | None,
    lease_token: str | None,
    project: str | None,
    retries: int,
    ca_bundle: str | None,
    workspace: str | None,
) -> Agent:
    """The configuration of the server: arguments first, then the environment."""
    client = AsyncArtifactClient(
        url,
        token=token,
        lease_token=lease_token,
        project=project,
        retries=retries,
        ca_bundle=ca_bundle,
    )
    if client.lease_token is None and client.token is None:
        raise ConfigurationError(
            "no credential: set MOBIUS_LEASE_TOKEN (publish under a job's lease) and/or "
            "MOBIUS_ARTIFACTS_TOKEN (read, and publish without a lease)"
        )
    root = workspace or os.environ.get(ENV_WORKSPACE) or os.getcwd()
    return Agent(client=client, workspace=Workspace.at(root))
