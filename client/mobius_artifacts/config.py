"""Where the client's configuration comes from: arguments first, then the environment.

- ``MOBIUS_ARTIFACTS_URL`` — the gateway's base URL;
- ``MOBIUS_LEASE_TOKEN`` — a worker's lease token: publishes carry it, and the
  project is read from its ``prj`` claim;
- ``MOBIUS_ARTIFACTS_TOKEN`` — a principal (bearer) token for reading, listing,
  downloading, signed URLs, deletion, quota and events;
- ``MOBIUS_PROJECT`` — the project, for read clients;
- ``MOBIUS_ARTIFACTS_CA_BUNDLE`` — a PEM file (or OpenSSL hashed directory) of the
  certificate authorities to trust instead of the system's, for a gateway behind
  a private CA;
- ``HTTP_PROXY`` / ``HTTPS_PROXY`` (or lower case) and ``NO_PROXY`` — a forward
  proxy, with the usual meaning (``user:password@`` in the proxy URL is sent as
  proxy authentication).

The project is the ``project`` argument, else ``MOBIUS_PROJECT``, else the lease
token's ``prj`` claim, else the principal token's ``projects`` claim when it
names exactly one project. Token payloads are decoded here **without
verification**, only to route requests; the gateway verifies every token on
every request, so a forged payload gains nothing.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from yarl import URL

from mobius_artifacts.errors import ConfigurationError, redact

ENV_URL: Final = "MOBIUS_ARTIFACTS_URL"
ENV_LEASE_TOKEN: Final = "MOBIUS_LEASE_TOKEN"
ENV_TOKEN: Final = "MOBIUS_ARTIFACTS_TOKEN"
ENV_PROJECT: Final = "MOBIUS_PROJECT"
ENV_CA_BUNDLE: Final = "MOBIUS_ARTIFACTS_CA_BUNDLE"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """A client's resolved configuration."""

    base_url: URL
    project: str
    token: str | None
    lease_token: str | None
    ssl: ssl.SSLContext | bool
    """The TLS verification of every request: a context of the CA bundle, else
    ``True`` (the system's trust store)."""
    proxy: URL | None
    proxy_authorization: str | None
    """``Proxy-Authorization`` for the proxy, from the credentials in its URL."""

    def __repr__(self) -> str:  # never the tokens, nor a URL's credentials
        proxy = str(self.proxy) if self.proxy else None
        return redact(
            f"Settings(base_url={str(self.base_url)!r}, project={self.project!r}, "
            f"token={'***' if self.token else None}, "
            f"lease_token={'***' if self.lease_token else None}, proxy={proxy!r})"
        )


def resolve(
    url: str | None,
    *,
    token: str | None,
    lease_token: str | None,
    project: str | None,
    ca_bundle: str | os.PathLike[str] | None,
    env: Mapping[str, str],
) -> Settings:
    """The configuration from explicit values, falling back on ``env`` for each one."""
    url = url or env.get(ENV_URL)
    if not url:
        raise ConfigurationError(f"no gateway URL: set {ENV_URL} or give the URL explicitly")
    base = URL(url)
    if base.scheme not in ("http", "https") or not base.host:
        raise ConfigurationError(f"the gateway URL must be http(s)://host[:port] (got {url!r})")
    base = base.with_query(None).with_fragment(None)
    token = token or env.get(ENV_TOKEN) or None
    lease_token = lease_token or env.get(ENV_LEASE_TOKEN) or None
    if base.user is not None and token is not None:
        raise ConfigurationError(
            f"the gateway URL {url} carries credentials (user:password@) and a principal "
            "token is set: a request has one Authorization header; remove the credentials "
            "from the URL"
        )
    resolved = project or env.get(ENV_PROJECT) or None
    if resolved is None:
        resolved = project_from_tokens(lease_token, token)
    if not resolved:
        raise ConfigurationError(
            f"no project: set {ENV_PROJECT} (or {ENV_LEASE_TOKEN}) or give it explicitly"
        )
    proxy, proxy_authorization = env_proxy(base, env)
    return Settings(
        base_url=base,
        project=resolved,
        token=token,
        lease_token=lease_token,
        ssl=ssl_context(ca_bundle or env.get(ENV_CA_BUNDLE) or None),
        proxy=proxy,
        proxy_authorization=proxy_authorization,
    )


def ssl_context(ca_bundle: str | os.PathLike[str] | None) -> ssl.SSLContext | bool:
    """A verifying context trusting only ``ca_bundle``; ``True`` (the system's) without one."""
    if ca_bundle is None:
        return True
    path = Path(ca_bundle)
    try:
        if path.is_dir():
            return ssl.create_default_context(capath=str(path))
        return ssl.create_default_context(cafile=str(path))
    except OSError as exc:  # ssl.SSLError included
        raise ConfigurationError(
            f"the CA bundle {str(path)!r} cannot be loaded: {exc.strerror or exc}"
        ) from None


def _variable(env: Mapping[str, str], name: str) -> str | None:
    """``name`` in lower case, else in upper case (lower case wins, as in curl and urllib)."""
    return env.get(name.lower()) or env.get(name.upper()) or None


def env_proxy(url: URL, env: Mapping[str, str]) -> tuple[URL | None, str | None]:
    """The forward proxy for ``url`` from ``<scheme>_proxy`` and ``no_proxy``, and the
    ``Proxy-Authorization`` of the credentials in its URL.

    Resolved here rather than by aiohttp's ``trust_env``, which would also read
    ``~/.netrc`` for the gateway's host: a ``default`` entry there would clash
    with the bearer token (aiohttp refuses a request with both). Upper-case
    ``HTTP_PROXY`` is ignored in a CGI environment (``REQUEST_METHOD`` set), where
    a request's ``Proxy`` header could have set it.
    """
    scheme = url.scheme
    if scheme == "http" and "REQUEST_METHOD" in env:
        value = env.get("http_proxy") or None
    else:
        value = _variable(env, f"{scheme}_proxy")
    if not value:
        return None, None
    no_proxy = _variable(env, "no_proxy")
    if no_proxy and bypasses_proxy(url.host or "", url.port, no_proxy):
        return None, None
    proxy = URL(value if "://" in value else "http://" + value)
    if proxy.scheme not in ("http", "https") or not proxy.host:
        raise ConfigurationError(f"the {scheme}_proxy URL must be http(s)://host[:port]")
    authorization = None
    if proxy.user is not None:
        credentials = f"{proxy.user}:{proxy.password or ''}".encode()
        authorization = "Basic " + base64.b64encode(credentials).decode("ascii")
        proxy = proxy.with_user(None)
    return proxy, authorization


def bypasses_proxy(host: str, port: int | None, no_proxy: str) -> bool:
    """``host:port`` is excluded from proxying by ``no_proxy``.

    Entries are separated by commas: ``*`` (everything), a domain (itself and its
    subdomains; a leading ``.`` or ``*.`` changes nothing), an IP address or a
    network in CIDR notation; each may end in ``:port`` (IPv6 in brackets then).
    """
    host = host.lower().rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(
            host.strip("[]")
        )
    except ValueError:
        address = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if entry == "*":
            return True
        entry_port: str | None = None
        if entry.startswith("["):
            entry, _, rest = entry[1:].partition("]")
            entry_port = rest.removeprefix(":") or None
        elif entry.count(":") == 1:
            entry, entry_port = entry.split(":")
        if not entry or (entry_port is not None and entry_port != str(port)):
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = entry.removeprefix("*").removeprefix(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def jwt_payload(token: str) -> dict[str, Any] | None:
    """The payload of a JWT, decoded WITHOUT verification (for routing only)."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def project_from_tokens(lease_token: str | None, token: str | None) -> str | None:
    """The project a lease token names, else the one project a principal token names."""
    if lease_token:
        payload = jwt_payload(lease_token)
        if payload is None or not isinstance(payload.get("prj"), str):
            raise ConfigurationError(
                "the lease token is not a JWT with a 'prj' claim; cannot tell its project"
            )
        return str(payload["prj"])
    if token:
        payload = jwt_payload(token) or {}
        projects = payload.get("projects")
        if isinstance(projects, list) and len(projects) == 1 and projects[0] != "*":
            return str(projects[0])
    return None
