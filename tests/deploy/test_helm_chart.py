"""The Helm chart (deploy/helm/petplatform), rendered and linted by the real Helm engine (helm-python-sdk: Helm's Go
SDK as a library, no helm binary) with its default values and with each ci/*-values.yaml, every object checked
against the OpenAPI schemas of a current Kubernetes release (kubernetes-validate), and the chart held to the
program: every target deployed with the registry's ports and peers, probes, limits, hardened pods, PDBs,
HPAs and NetworkPolicies, and dashboards and alerts querying only metrics the program registers."""
from __future__ import annotations

import base64
import functools
import json
import os
import re
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from helm_python import _native
from prometheus_client import REGISTRY as METRICS

from app.registry import REGISTRY
from mesh.config import Settings, load_settings
from mesh.registry import peer_addresses
from tools import helm_values

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "petplatform"
KUBERNETES = "1.37.0"  # the newest release whose schemas kubernetes-validate ships
NAMESPACE = "pets"
CI_VALUES = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))
# The replica ranges (from the system design); the others run with workloadDefaults (2-5).
REPLICAS = {"edge": (3, 10), "envoy": (3, 10), "auth": (2, 5), "user": (2, 5), "pet": (2, 8), "matching": (2, 5),
            "chat": (2, 8), "marketplace": (2, 5), "admin": (1, 3), "recommender": (2, 5), "fraud": (2, 5)}
CRDS = {"ServiceMonitor", "PrometheusRule"}  # the Prometheus Operator's: no Kubernetes schema


@pytest.fixture(scope="module", autouse=True)
def schemas_read_once():
    """kubernetes-validate reads (megabytes of) schema files again for every object: once is enough."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kubernetes_validate.utils, "schema_contents",
                   functools.lru_cache(maxsize=None)(kubernetes_validate.utils.schema_contents))
        yield


def render(values: dict | None = None, *, api_versions: tuple[str, ...] = ()) -> list[dict]:
    chart = helm.Chart.load(CHART)
    opts = {"name": "petplatform", "namespace": NAMESPACE, "is_install": True}
    if api_versions:
        # Chart.render has no keyword for the cluster's API versions; the engine's options do.
        out = json.loads(_native.call_string("helm_render", chart._raw(), json.dumps(values or {}),
                                             json.dumps({**opts, "api_versions": list(api_versions)})))
    else:
        out = chart.render(values or {}, **opts)
    return [doc for path, text in sorted(out.items()) if not path.endswith("NOTES.txt")
            for doc in yaml.load_all(text, Loader=yaml.CSafeLoader) if doc]


def ci_values(name: str) -> dict:
    return yaml.safe_load((CHART / "ci" / name).read_text())


@pytest.fixture(scope="module", params=["default", *CI_VALUES])
def rendered(request) -> tuple[dict, list[dict]]:
    values = {} if request.param == "default" else ci_values(request.param)
    return values, render(values)


def kinds(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def component(obj: dict) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/component"]


def test_the_generated_files_are_current():
    assert helm_values.main(["--check"]) == 0, "run `make helm`"


def test_lint_finds_nothing_with_every_values_file():
    for name in ["default", *CI_VALUES]:
        values = None if name == "default" else ci_values(name)
        report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBERNETES}")
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not problems and not report["errors"], (name, problems, report["errors"])


def test_every_object_is_valid_for_kubernetes(rendered):
    _, objects = rendered
    for obj in objects:
        if obj["kind"] in CRDS:
            assert obj["apiVersion"] == "monitoring.coreos.com/v1" and obj["spec"]
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as e:
            raise AssertionError(f"{obj['kind']} {obj['metadata']['name']}: {e.message} at {list(e.path)}") from None


def test_every_target_of_the_program_is_a_deployment_agreeing_with_it(rendered):
    values, objects = rendered
    deployments = {component(d): d for d in kinds(objects, "Deployment").values()}
    services = kinds(objects, "Service")
    envoy = values.get("edge", {}).get("kind", "envoy") == "envoy"
    assert set(deployments) == {*REGISTRY.names, "edge", "web", *(["envoy", "ratelimit"] if envoy else [])}
    settings = Settings()
    ports = {**REGISTRY.ports, "edge": settings.http_port, "web": settings.web_port}
    self_contained = values.get("infrastructure", {}).get("selfContained", False)
    for name, port in ports.items():
        pod = deployments[name]["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        assert c["image"] == "petplatform:0.1.0"
        target = ["run", f"--target={name}"]
        if name in REGISTRY.names and not self_contained:
            target.append("--no-migrate")  # the migrations Job ran before
        assert c["args"] == target
        declared = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert declared[{"edge": "http", "web": "http"}.get(name, "grpc")] == port
        assert declared["metrics"] == 9464
        service = services[f"petplatform-{name}"]["spec"]
        assert {p["name"]: p["port"] for p in service["ports"]}["metrics"] == 9464
        if name in REGISTRY.names:
            # Native gRPC probes on grpc.health.v1, on the port the program serves.
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert c[probe]["grpc"] == {"port": port, "service": ""}, (name, probe)
            assert {p["name"]: p["port"] for p in service["ports"]}["grpc"] == port
        else:
            assert all(c[p]["httpGet"]["port"] == port for p in ("startupProbe", "livenessProbe", "readinessProbe"))
    # Peers reach each other by the addresses the chart gives (PETPLATFORM_<NAME>_ADDR), at Services that exist.
    (config,) = [c for c in kinds(objects, "ConfigMap").values() if c["metadata"]["name"].endswith("app-config")]
    assert config["metadata"]["name"] == "petplatform-app-config"
    for spec in REGISTRY:
        host, port = config["data"][f"PETPLATFORM_{spec.name.upper()}_ADDR"].split(":")
        assert any(p["port"] == int(port) == spec.port for p in services[host]["spec"]["ports"])


def test_every_deployment_is_hardened_probed_limited_spread_and_scaled(rendered):
    _, objects = rendered
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h["spec"] for h in kinds(objects, "HorizontalPodAutoscaler").values()}
    pdbs = [p["spec"] for p in kinds(objects, "PodDisruptionBudget").values()]
    drain = helm_values.program()["drainSeconds"]
    for name, d in kinds(objects, "Deployment").items():
        pod = d["spec"]["template"]["spec"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (c,) = pod["containers"]
        assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "privileged": False, "capabilities": {"drop": ["ALL"]}}
        tmp = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}["tmp"]
        assert tmp == "/tmp" and {v["name"]: v for v in pod["volumes"]}["tmp"]["emptyDir"]
        assert {"startupProbe", "livenessProbe", "readinessProbe"} <= set(c)
        assert set(c["resources"]["requests"]) == set(c["resources"]["limits"]) == {"cpu", "memory"}
        # SIGTERM comes after the preStop pause; the server then drains for `drain` seconds: both fit the grace.
        assert pod["terminationGracePeriodSeconds"] > c["lifecycle"]["preStop"]["sleep"]["seconds"] + drain
        assert {t["topologyKey"] for t in pod["topologySpreadConstraints"]} == {
            "kubernetes.io/hostname", "topology.kubernetes.io/zone"}
        hpa = hpas[name]
        want = REPLICAS.get(component(d), None)
        if want:
            assert (hpa["minReplicas"], hpa["maxReplicas"]) == want, name
        assert any(p["selector"]["matchLabels"].items() <= labels.items() for p in pdbs), f"{name} has no PDB"


def test_stateful_sets_are_hardened_and_keep_their_data(rendered):
    values, objects = rendered
    sets = {component(s): s for s in kinds(objects, "StatefulSet").values()}
    if not values.get("infrastructure", {}).get("selfContained"):
        assert sets == {}
        return
    assert set(sets) == {"postgresql", "rabbitmq", "redis", "minio"}
    for s in sets.values():
        pod = s["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True
        (c,) = pod["containers"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        (claim,) = s["spec"]["volumeClaimTemplates"]
        assert claim["spec"]["resources"]["requests"]["storage"]
    (database,) = [s for s in kinds(objects, "Secret").values() if s["metadata"]["name"] == "petplatform-database"]
    url = base64.b64decode(database["data"]["PETPLATFORM_DATABASE_URL"]).decode()
    assert url.startswith("postgresql+asyncpg://petplatform:") and "@petplatform-postgresql:5432/" in url


def test_network_policies_let_in_only_the_edge_and_each_services_callers(rendered):
    values, objects = rendered
    policies = {p["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component"): p["spec"]
                for p in kinds(objects, "NetworkPolicy").values()}
    deny = policies.pop(None)
    assert deny["podSelector"]["matchLabels"] == {"app.kubernetes.io/instance": "petplatform"} and "ingress" not in deny
    pods = {component(d) for d in (*kinds(objects, "Deployment").values(), *kinds(objects, "StatefulSet").values())}
    assert pods <= set(policies), f"no policy for {pods - set(policies)}"
    envoy = values.get("edge", {}).get("kind", "envoy") == "envoy"
    public = {"envoy" if envoy else "edge", "web"}

    def sources(rule: dict) -> set[str]:
        out = set()
        for peer in rule["from"]:
            if "namespaceSelector" in peer:
                out.add("outside" if peer["namespaceSelector"] != {"matchLabels": {
                    "kubernetes.io/metadata.name": "monitoring"}} else "monitoring")
            else:
                out.add(peer["podSelector"]["matchLabels"].get("app.kubernetes.io/component", "release"))
        return out
    for name, spec in policies.items():
        allowed = {}
        for rule in spec["ingress"]:
            for port in rule["ports"]:
                allowed.setdefault(port["port"], set()).update(sources(rule))
        if name in public:
            assert "outside" in allowed["http"]
        else:
            assert all("outside" not in s for s in allowed.values()), f"{name} is reachable from outside"
        if name in REGISTRY.names:
            callers = {s.name for s in REGISTRY if name in s.peers}
            assert allowed["grpc"] == {"edge", *(["envoy"] if envoy else []), *callers}, name
            assert allowed["metrics"] == {"monitoring"}


def test_configuration_secrets_and_checksums(rendered, monkeypatch):
    values, objects = rendered
    secrets = set(kinds(objects, "Secret"))
    for kind in ("database", "jwt", "oauth", "api-keys"):
        existing = values.get("secrets", {}).get(kind, {}).get("existingSecret")
        assert (f"petplatform-{kind}" in secrets) != bool(existing)
        for d in kinds(objects, "Deployment").values():
            (c,) = d["spec"]["template"]["spec"]["containers"]
            if component(d) in {*REGISTRY.names, "edge", "web"}:
                refs = [e.get("secretRef", {}).get("name") for e in c["envFrom"]]
                assert (existing or f"petplatform-{kind}") in refs
                assert {"checksum/config", "checksum/secrets"} <= set(d["spec"]["template"]["metadata"]["annotations"])
    jwt = kinds(objects, "Secret").get("petplatform-jwt")
    if jwt:  # made here: the signing key generated, an EC P-256 PEM the program loads
        pem = base64.b64decode(jwt["data"]["PETPLATFORM_JWT_PRIVATE_KEY"])
        assert load_pem_private_key(pem, None).curve.name == "secp256r1"  # type: ignore[union-attr]
    # The program reads app-config as it reads its environment (the profile aside: its stores are not here).
    config = kinds(objects, "ConfigMap")["petplatform-app-config"]["data"]
    for key, value in config.items():
        if key != "PETPLATFORM_PROFILE":
            monkeypatch.setenv(key, value)
    settings = load_settings()
    peer_addresses(REGISTRY.ports, settings.host, os.environ)  # every *_ADDR names a service
    assert settings.host == "0.0.0.0" and settings.log_json and settings.metrics_port == 9464


def test_migrations_run_before_any_new_pod(rendered):
    values, objects = rendered
    (job,) = kinds(objects, "Job").values()
    hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
    self_contained = values.get("infrastructure", {}).get("selfContained", False)
    assert hooks == (["pre-upgrade"] if self_contained else ["pre-install", "pre-upgrade"])
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"] == ["migrate"] and pod["automountServiceAccountToken"] is False
    # What the Job reads exists before it: app-config and the Secrets are hooks of a lower weight.
    for obj in (*kinds(objects, "ConfigMap").values(), *kinds(objects, "Secret").values()):
        if obj["metadata"]["name"] == "petplatform-app-config" or obj["kind"] == "Secret":
            assert "pre-install" in obj["metadata"]["annotations"]["helm.sh/hook"]
            assert int(obj["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0


def test_envoy_reaches_every_cluster_at_a_service_of_the_release():
    objects = render()
    envoy = yaml.safe_load(kinds(objects, "ConfigMap")["petplatform-envoy"]["data"]["envoy.yaml"])
    services = {name: {p["port"] for p in s["spec"]["ports"]} for name, s in kinds(objects, "Service").items()}
    for cluster in envoy["static_resources"]["clusters"]:
        for endpoint in cluster["load_assignment"]["endpoints"]:
            for lb in endpoint["lb_endpoints"]:
                address = lb["endpoint"]["address"]["socket_address"]
                if address["address"] != "127.0.0.1":
                    assert address["port_value"] in services[address["address"]], cluster["name"]
    descriptors = kinds(objects, "ConfigMap")["petplatform-envoy"]["binaryData"]["descriptors.binpb"]
    assert base64.b64decode(descriptors) == (ROOT / "build" / "descriptors.binpb").read_bytes()
    text = kinds(objects, "ConfigMap")["petplatform-envoy"]["data"]["envoy.yaml"]
    assert text.count("xff_num_trusted_hops: 1") == 2, "behind the ingress controller: one trusted hop"
    assert "exact: https://app.petplatform.example" in text  # the web app's origin, from values
    ingress = {r["host"]: r["http"]["paths"][0]["backend"]["service"]
               for i in kinds(objects, "Ingress").values() for r in i["spec"]["rules"]}
    assert ingress["api.petplatform.example"] == {"name": "petplatform-envoy", "port": {"name": "http"}}
    assert ingress["grpc.petplatform.example"]["port"] == {"name": "grpc"}
    assert all(i["spec"]["tls"] for i in kinds(objects, "Ingress").values())


def test_a_wrong_value_fails_at_install():
    chart = helm.Chart.load(CHART)
    for bad in ({"edge": {"kind": "nginx"}}, {"services": {"pet": {"autoscaling": {"minReplicas": 0}}}},
                {"metrics": {"port": "nine"}}, {"secrets": {"databse": {}}},
                {"services": {"pet": {"resources": {"limits": {"cpu": "lots"}}}}}):
        with pytest.raises(helm.HelmValuesError):
            chart.render(bad, name="petplatform", namespace=NAMESPACE, is_install=True)


def exported_metrics() -> set[str]:
    """Every sample name the program can expose on /metrics: its modules imported, then the registry asked."""
    for spec in REGISTRY:
        spec.load()
    import app.wiring  # noqa: F401  (the edge, the runtime and what they import)
    import gateway.edge  # noqa: F401
    names = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",),
                "summary": ("_count", "_sum", ""), "info": ("_info",)}
    for family in METRICS.collect():
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    return names


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset"}


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        rest = expr[m.end():].lstrip()
        if m.group() not in PROMQL_WORDS and not rest.startswith("("):
            names.add(m.group())
    return names


def test_dashboards_and_alerts_query_only_metrics_the_program_exports():
    exported = exported_metrics()
    for name in ("petplatform_outbox_lag_seconds", "petplatform_events_dead_lettered_total",
                 "petplatform_db_pool_connections", "petplatform_cache_lookups_total", "petplatform_rpc_total",
                 "petplatform_rpc_seconds_bucket", "petplatform_chat_streams", "petplatform_pet_watch_streams"):
        assert name in exported  # what the issue asks to watch
    objects = render({"metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}})
    dashboards = {n: json.loads(next(iter(c["data"].values())))
                  for n, c in kinds(objects, "ConfigMap").items() if "-dashboard-" in n}
    assert set(dashboards) == {f"petplatform-dashboard-{n}" for n in ("overview", *REGISTRY.names)}
    queried = set()
    for board in dashboards.values():
        assert board["panels"] and len({p["id"] for p in board["panels"]}) == len(board["panels"])
        for panel in board["panels"]:
            for target in panel["targets"]:
                queried |= metric_names(target["expr"])
    assert queried and queried <= exported, f"not exported by the program: {queried - exported}"
    (rule,) = kinds(objects, "PrometheusRule").values()
    alerts = {r["alert"]: metric_names(r["expr"]) for g in rule["spec"]["groups"] for r in g["rules"]}
    kube_state = {"kube_pod_container_status_restarts_total"}  # kube-state-metrics', not the program's
    for alert, names in alerts.items():
        assert names and names <= exported | kube_state, (alert, names - exported)
    assert {"PetPlatformErrorRatio", "PetPlatformSlowCalls", "PetPlatformOutboxLag", "PetPlatformEventsDeadLettered",
            "PetPlatformPodRestarting"} <= set(alerts)


def test_monitoring_objects_follow_the_prometheus_operator_being_there():
    assert not kinds(render(), "ServiceMonitor") and not kinds(render(), "PrometheusRule")
    present = render(api_versions=("monitoring.coreos.com/v1",))
    (monitor,) = kinds(present, "ServiceMonitor").values()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert kinds(present, "PrometheusRule")


def test_notes_say_what_was_installed_and_what_is_missing():
    chart = helm.Chart.load(CHART)

    def notes(values: dict) -> str:
        out = chart.render(values, name="petplatform", namespace=NAMESPACE, is_install=True)
        return out["petplatform/templates/NOTES.txt"]
    bare = notes({})
    assert "https://api.petplatform.example" in bare and ", ".join(sorted(REGISTRY.names)) in bare
    assert "PETPLATFORM_DATABASE_URL" in bare and "edge.ratelimit.redisAddress" in bare
    assert "WARNING" not in notes(ci_values("self-contained-values.yaml"))
