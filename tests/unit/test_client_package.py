"""The ``mobius_artifacts`` package: its public names, the blocking twin's signatures,
configuration (proxies, CA bundle), and that it is the only home of the client."""

from __future__ import annotations

import base64
import importlib
import inspect
import pkgutil
import ssl
import subprocess
import sys
from pathlib import Path

import mobius_artifacts
import pytest
from mobius_artifacts import AsyncArtifactClient, ConfigurationError
from mobius_artifacts.config import bypasses_proxy, env_proxy, resolve
from mobius_artifacts.sync import ArtifactClient
from yarl import URL

import gateway
from tests.helpers import tls_files

# Public names of the client's first release: they stay.
RELEASED_NAMES = [
    "ENV_LEASE_TOKEN",
    "ENV_PROJECT",
    "ENV_TOKEN",
    "ENV_URL",
    "Artifact",
    "ArtifactClient",
    "ArtifactDeleted",
    "ArtifactError",
    "ArtifactRef",
    "ArtifactTooLarge",
    "AsyncArtifactClient",
    "ConfigurationError",
    "DigestMismatch",
    "Event",
    "EventStream",
    "Forbidden",
    "IdempotencyConflict",
    "InvalidRequest",
    "LeaseInactive",
    "LeaseSuperseded",
    "Lineage",
    "LineageNotAllowed",
    "NotFound",
    "Owner",
    "Progress",
    "Quota",
    "QuotaExceeded",
    "SignatureInvalid",
    "SignedURL",
    "Source",
    "Unauthenticated",
    "Unavailable",
    "download",
    "publish",
]
ENV = {"MOBIUS_ARTIFACTS_URL": "http://gw.example:8080", "MOBIUS_PROJECT": "p"}


def test_every_public_name_resolves_and_the_one_liners_stay_functions() -> None:
    for name in mobius_artifacts.__all__:
        assert getattr(mobius_artifacts, name) is not None, name
    for module in pkgutil.walk_packages(mobius_artifacts.__path__, "mobius_artifacts."):
        if module.name != "mobius_artifacts.__main__":
            importlib.import_module(module.name)
    # no submodule shadows the package's functions once everything is imported
    assert inspect.isfunction(mobius_artifacts.publish)
    assert inspect.isfunction(mobius_artifacts.download)


def test_the_released_public_names_stay() -> None:
    assert set(RELEASED_NAMES) <= set(mobius_artifacts.__all__)


def test_the_gateway_carries_no_copy_of_the_client() -> None:
    """``gateway.client`` (a re-export of ``mobius_artifacts``) is gone: the client
    has one import name, from one distribution."""
    assert not list((Path(gateway.__file__).parent / "client").rglob("*.py"))
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("gateway.client.core")


SYNC_METHODS = [
    "publish",
    "publish_text",
    "get",
    "list",
    "download",
    "download_to",
    "read_content",
    "signed_url",
    "delete",
    "quota",
    "events",
]


def parameters(function: object, *, without: tuple[str, ...] = ()) -> list[tuple[object, ...]]:
    signature = inspect.signature(function)  # type: ignore[arg-type]
    return [
        (p.name, p.kind, p.default, p.annotation)
        for p in signature.parameters.values()
        if p.name not in without
    ]


@pytest.mark.parametrize("method", SYNC_METHODS)
def test_blocking_methods_have_the_signatures_of_their_async_twins(method: str) -> None:
    sync = parameters(getattr(ArtifactClient, method))
    assert sync == parameters(getattr(AsyncArtifactClient, method))
    assert all(kind != inspect.Parameter.VAR_KEYWORD for _, kind, _, _ in sync)


def test_blocking_constructor_takes_the_async_arguments_but_a_session() -> None:
    assert parameters(ArtifactClient.__init__) == parameters(
        AsyncArtifactClient.__init__, without=("session",)
    )


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "bypassed"),
    [
        ("gw.example", 443, "*", True),
        ("gw.example", 443, "example", True),
        ("gw.example", 443, ".example", True),
        ("gw.example", 443, "*.example", True),
        ("gw.example", 443, "other.example, gw.example", True),
        ("gw.example", 443, "w.example", False),
        ("gw.example", 443, "gw.example:8443", False),
        ("gw.example", 8443, "gw.example:8443", True),
        ("GW.Example.", 443, "gw.example", True),
        ("10.1.2.3", 80, "10.0.0.0/8", True),
        ("10.1.2.3", 80, "10.1.2.3", True),
        ("10.1.2.3", 80, "11.0.0.0/8,example", False),
        ("::1", 80, "[::1]:80", True),
        ("::1", 80, "::1", True),
        ("127.0.0.1", 80, "", False),
    ],
)
def test_no_proxy(host: str, port: int, no_proxy: str, bypassed: bool) -> None:
    assert bypasses_proxy(host, port, no_proxy) is bypassed


def test_proxy_from_the_environment() -> None:
    url = URL("https://gw.example/")
    assert env_proxy(url, {}) == (None, None)
    proxy, auth = env_proxy(url, {"HTTPS_PROXY": "http://bob:s%40cret@proxy.example:3128"})
    assert proxy == URL("http://proxy.example:3128")
    assert auth == "Basic " + base64.b64encode(b"bob:s@cret").decode()
    # lower case wins; a scheme-less value is http; NO_PROXY applies
    both = {"https_proxy": "lower:1", "HTTPS_PROXY": "http://upper:2"}
    assert env_proxy(url, both)[0] == URL("http://lower:1")
    assert env_proxy(url, {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example"}) == (None, None)
    # the http proxy is not the https one, and HTTP_PROXY means nothing under CGI
    plain = URL("http://gw.example/")
    assert env_proxy(url, {"HTTP_PROXY": "http://p:1"}) == (None, None)
    assert env_proxy(plain, {"HTTP_PROXY": "http://p:1"})[0] == URL("http://p:1")
    assert env_proxy(plain, {"HTTP_PROXY": "http://p:1", "REQUEST_METHOD": "GET"})[0] is None
    with pytest.raises(ConfigurationError):
        env_proxy(url, {"HTTPS_PROXY": "socks5://p:1080"})


def test_ca_bundle_from_argument_or_environment(tmp_path: Path) -> None:
    assert resolve(None, token=None, lease_token=None, project=None, ca_bundle=None, env=ENV).ssl
    missing = tmp_path / "missing.pem"
    for ca_bundle, env in ((missing, ENV), (None, {**ENV, "MOBIUS_ARTIFACTS_CA_BUNDLE": missing})):
        with pytest.raises(ConfigurationError, match="CA bundle"):
            AsyncArtifactClient(ca_bundle=ca_bundle, env={k: str(v) for k, v in env.items()})
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigurationError, match="CA bundle"):
        AsyncArtifactClient(ca_bundle=garbage, env=ENV)
    ca, _, _ = tls_files(tmp_path)
    for ca_bundle, env in ((ca, ENV), (None, {**ENV, "MOBIUS_ARTIFACTS_CA_BUNDLE": str(ca)})):
        settings = resolve(
            None, token=None, lease_token=None, project=None, ca_bundle=ca_bundle, env=env
        )
        assert isinstance(settings.ssl, ssl.SSLContext)
        assert settings.ssl.verify_mode == ssl.CERT_REQUIRED and settings.ssl.check_hostname
        (trusted,) = settings.ssl.get_ca_certs()  # the bundle's CA only, not the system's
        assert dict(entry[0] for entry in trusted["subject"])["commonName"] == (
            "artifact gateway test CA"
        )


def test_console_script_version() -> None:
    script = Path(sys.executable).parent / "mobius-artifacts"
    result = subprocess.run(
        [script, "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"mobius-artifacts {mobius_artifacts.__version__}"
