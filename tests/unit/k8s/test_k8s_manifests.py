"""Structure of both rendered overlays: what a cluster would run, checked without a cluster."""

from __future__ import annotations

import base64
import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from services.access.api import AccessApi
from services.receiver.api import ReceiverApi
from shared.api import OPENAPI_PATH, Api
from shared.auth import Tokens
from shared.bus import Service
from shared.config import (
    SERVICE_SETTINGS,
    SHARED_PARTS,
    AccessSettings,
    ArchiveSettings,
    HarmoniserSettings,
    HttpSettings,
    KafkaSettings,
    Section,
    StateSettings,
    TokenSettings,
    database_urls,
    every_variable,
)
from shared.http import PROBES
from shared.topics import SERVICES
from tests.unit.k8s.k8s_objects import (
    K8S,
    ROOT,
    KustomizeError,
    Obj,
    of_kind,
    one,
    prod_tree,
    render,
)
from tools.k8s.topics import CLUSTER, default_partitions

# What the Secret carries: the bearer tokens' hashes and the database URLs of the services
# with relational state (`shared.config.database_urls`, which `genomhub db upgrade` migrates).
SECRET_SETTINGS = {
    "GENOMHUB_TOKENS",
    "GENOMHUB_RECEIVER_DATABASE_URL",
    "GENOMHUB_INDEXER_DATABASE_URL",
    "GENOMHUB_BILLING_DATABASE_URL",
    "GENOMHUB_HARMONISER_DATABASE_URL",
    "GENOMHUB_PUBLISHER_DATABASE_URL",
}
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
# What each overlay lets outside the namespace reach: in dev the receiver alone (from anywhere,
# for `kubectl port-forward`); in prod the receiver (the regions' uploads) and the access
# service (`genomhub fetch`, the working copies' URLs, the spokes' portals), each through its
# own Ingress, from the ingress controller only. Each with the API its Ingress routes to.
PUBLIC = {"dev": {"receiver"}, "prod": {"receiver", "access"}}
PUBLIC_APIS: dict[str, type[Api]] = {"receiver": ReceiverApi, "access": AccessApi}
# The public services whose answers are streamed downloads (working copies): never buffered
# by the proxy, or a revocation would not cut a download the proxy had already spooled.
STREAMED_ANSWERS = {"access"}
NAMESPACES = {"dev": "genomhub-dev", "prod": "genomhub"}
IMAGE = "genomhub:" + tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def port_of(service: str) -> Any:
    return SERVICE_SETTINGS[service].model_fields["port"].default


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def config(objects: list[Obj]) -> dict[str, str]:
    data: dict[str, str] = one(objects, "ConfigMap", "genomhub-config")["data"]
    return data


def secret(objects: list[Obj], name: str = "genomhub-secrets") -> dict[str, str]:
    data = one(objects, "Secret", name)["data"]
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def container_env(workload: Obj) -> dict[str, str]:
    (container,) = pod_spec(workload)["containers"]
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def environment(objects: list[Obj], workload: Obj) -> dict[str, str]:
    """The environment a service container starts with: ConfigMap, Secret, then its own env."""
    return {**config(objects), **secret(objects), **container_env(workload)}


# --- the five services ---------------------------------------------------------------


def test_one_deployment_and_service_per_service(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    genomhub = [
        d
        for d in of_kind(objects, "Deployment")
        if d["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    ]
    assert sorted(d["metadata"]["name"] for d in genomhub) == sorted(SERVICES)
    for name in SERVICES:
        (container,) = pod_spec(one(objects, "Deployment", name))["containers"]
        assert container["args"] == ["run", name]
        one(objects, "Service", name)


@pytest.fixture(scope="module")
def health_routes() -> dict[str, set[str]]:
    """The GET routes each real service's web application serves."""
    routes: dict[str, set[str]] = {}
    # Building a service contacts no broker; it only needs to know one and its credentials.
    offline = KafkaSettings(bootstrap="127.0.0.1:9", username="unused", password=SecretStr("unused"))
    for name in SERVICES:
        service = Service(name, SERVICE_SETTINGS[name](kafka=offline))
        routes[name] = {
            r.resource.canonical for r in service.web.router.routes() if r.method == "GET" and r.resource
        }
    return routes


def test_probes_hit_real_endpoints_on_the_configured_port(
    overlay: tuple[str, list[Obj]], health_routes: dict[str, set[str]]
) -> None:
    _, objects = overlay
    for name in SERVICES:
        port = port_of(name)
        deployment = one(objects, "Deployment", name)
        (container,) = pod_spec(deployment)["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": port}, name
        liveness, readiness = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
        assert (liveness["path"], readiness["path"]) == ("/healthz", "/readyz")
        for probe in (liveness, readiness):
            assert ports.get(probe["port"], probe["port"]) == port
            assert probe["path"] in health_routes[name]
        (service_port,) = one(objects, "Service", name)["spec"]["ports"]
        assert service_port["port"] == port
        assert ports[service_port["targetPort"]] == port
        # The container listens on every interface, or the kubelet's probes cannot reach it.
        assert environment(objects, deployment)["GENOMHUB_HTTP_HOST"] == "0.0.0.0"
        # Nothing overrides the port the Service and probes assume.
        assert f"GENOMHUB_{name.upper()}_PORT" not in environment(objects, deployment)


def test_services_and_job_take_env_from_the_configmap_and_secret(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    for workload in [*(one(objects, "Deployment", s) for s in SERVICES), one(objects, "Job", "db-upgrade")]:
        (container,) = pod_spec(workload)["containers"]
        assert container["image"] == IMAGE
        assert container["envFrom"] == [
            {"configMapRef": {"name": "genomhub-config"}},
            {"secretRef": {"name": "genomhub-secrets"}},
        ]
    config(objects), secret(objects)  # both exist in the overlay


S = TypeVar("S", bound=Section)


def settings_of(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, section: type[S]) -> S:
    """The ``section`` a container with environment ``env`` reads, nothing else of the test's."""
    for key in [k for k in os.environ if k.startswith("GENOMHUB_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return section()


def writable_volume(workload: Obj, path: Path) -> str:
    """The volume of ``workload``'s container that ``path`` is on; it must be writable."""
    (container,) = pod_spec(workload)["containers"]
    mounts = [m for m in container.get("volumeMounts", []) if path.is_relative_to(m["mountPath"])]
    assert mounts, f"{workload['metadata']['name']}: {path} is on the read-only root filesystem"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    assert not mount.get("readOnly"), f"{workload['metadata']['name']}: {path} is on a read-only volume"
    return str(mount["name"])


def test_environment_is_valid_settings(
    overlay: tuple[str, list[Obj]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every GENOMHUB_* key is a real setting, and the whole environment parses as every section."""
    name, objects = overlay
    for workload in [*(one(objects, "Deployment", s) for s in SERVICES), one(objects, "Job", "db-upgrade")]:
        env = environment(objects, workload)
        unknown = {k for k in env if k.startswith("GENOMHUB_") and k not in every_variable()}
        assert not unknown, f"not settings of shared/config.py: {sorted(unknown)}"
        for section in (*SHARED_PARTS, *SERVICE_SETTINGS.values()):
            settings_of(env, monkeypatch, section)
        assert settings_of(env, monkeypatch, KafkaSettings).bootstrap == env["GENOMHUB_KAFKA_BOOTSTRAP"]
        state = settings_of(env, monkeypatch, StateSettings)
        writable_volume(workload, state.state_dir)
        writable_volume(workload, state.cache)
        assert settings_of(env, monkeypatch, ArchiveSettings).store_url.startswith("s3://")
        if name == "dev":
            # real sha256 digests of the documented dev tokens
            Tokens(settings_of(env, monkeypatch, TokenSettings).tokens)


def test_secrets_are_in_the_secret_only(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    assert set(secret(objects)) >= SECRET_SETTINGS
    assert not set(config(objects)) & SECRET_SETTINGS


def test_bootstrap_and_tracing_point_at_real_services(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    data = config(objects)
    kafka = one(objects, "Kafka", CLUSTER)
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["type"] == "internal" and listener["tls"] is True
    assert data["GENOMHUB_KAFKA_BOOTSTRAP"] == f"{CLUSTER}-kafka-bootstrap:{listener['port']}"
    assert data["GENOMHUB_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    endpoint = urlsplit(data["OTEL_EXPORTER_OTLP_ENDPOINT"])
    jaeger_service = one(objects, "Service", endpoint.hostname or "")
    assert endpoint.port in {p["port"] for p in jaeger_service["spec"]["ports"]}
    assert endpoint.port == 4318  # the services export OTLP over HTTP


def test_workloads_run_non_root_on_a_read_only_root(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    workloads = [o for o in objects if o["kind"] in WORKLOAD_KINDS]
    assert len(workloads) >= len(SERVICES) + 2  # + Jaeger and the migration Job
    for workload in workloads:
        spec = pod_spec(workload)
        pod_security = spec.get("securityContext", {})
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}
        for container in spec["containers"]:
            security = {**pod_security, **container.get("securityContext", {})}
            where = f"{workload['kind']} {workload['metadata']['name']}"
            assert security.get("runAsNonRoot") is True, where
            assert isinstance(security.get("runAsUser"), int) and security["runAsUser"] > 0, where
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{where}: /tmp must be an emptyDir"
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes or mount["name"] in claims, f"{where}: {mount['name']}"
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), where
            assert "memory" in resources.get("limits", {}), where
        assert spec.get("automountServiceAccountToken") is False


def test_every_volume_claim_exists(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    claims = {c["metadata"]["name"] for c in of_kind(objects, "PersistentVolumeClaim")}
    for workload in (o for o in objects if o["kind"] in WORKLOAD_KINDS):
        for volume in pod_spec(workload).get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims


def test_everything_lives_in_the_overlay_namespace(overlay: tuple[str, list[Obj]]) -> None:
    name, objects = overlay
    namespace = NAMESPACES[name]
    one(objects, "Namespace", namespace)
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace, obj["metadata"]["name"]
            assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "genomhub"


# --- Kafka, Jaeger, database ------------------------------------------------------------


def test_strimzi_kraft_cluster(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    kafka = one(objects, "Kafka", CLUSTER)
    assert kafka["apiVersion"] == "kafka.strimzi.io/v1"
    assert kafka["metadata"]["annotations"] == {
        "strimzi.io/node-pools": "enabled",
        "strimzi.io/kraft": "enabled",
    }
    assert kafka["spec"]["kafka"]["version"] == "4.3.1"
    assert "zookeeper" not in kafka["spec"]
    (pool,) = of_kind(objects, "KafkaNodePool")
    assert pool["apiVersion"] == "kafka.strimzi.io/v1"
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == CLUSTER
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    kafka_config = kafka["spec"]["kafka"]["config"]
    replicas = pool["spec"]["replicas"]
    assert 1 <= kafka_config["min.insync.replicas"] <= kafka_config["default.replication.factor"] <= replicas
    assert kafka_config["offsets.topic.replication.factor"] == kafka_config["default.replication.factor"]
    data = config(objects)
    assert int(data["GENOMHUB_TOPIC_REPLICAS"]) == kafka_config["default.replication.factor"]
    assert int(data["GENOMHUB_TOPIC_PARTITIONS"]) == default_partitions()
    assert kafka["spec"]["entityOperator"]["topicOperator"] == {}


def test_jaeger_v2_all_in_one(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    (container,) = pod_spec(one(objects, "Deployment", "jaeger"))["containers"]
    assert container["image"] == "jaegertracing/jaeger:2.13.0"
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    service_ports = {
        p["port"]: named[p["targetPort"]] for p in one(objects, "Service", "jaeger")["spec"]["ports"]
    }
    assert service_ports == {4317: 4317, 4318: 4318, 16686: 16686}


def databases_of(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    settings_of(env, monkeypatch, StateSettings)  # the environment is now exactly ``env``
    return database_urls()


def test_migration_job_upgrades_the_databases(
    overlay: tuple[str, list[Obj]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, objects = overlay
    job = one(objects, "Job", "db-upgrade")
    (container,) = pod_spec(job)["containers"]
    assert container["args"] == ["db", "upgrade"]
    assert pod_spec(job)["restartPolicy"] == "OnFailure"
    # `genomhub db upgrade` migrates every database of `database_urls`: each one must be
    # the cluster's PostgreSQL, never a SQLite file in the Job's throwaway /tmp.
    urls = databases_of(environment(objects, job), monkeypatch)
    assert set(urls) == {"receiver", "indexer", "billing", "harmoniser", "access", "archive", "publisher"}
    for service, url in urls.items():
        assert url.startswith("postgresql://"), service
    # The services read the very same URLs the Job migrated.
    for service in ("receiver", "indexer", "billing", "harmoniser", "publisher"):
        env = environment(objects, one(objects, "Deployment", service))
        assert databases_of(env, monkeypatch)[service] == urls[service]


# --- NetworkPolicies ---------------------------------------------------------------------


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not ok:
            return False
    return True


def admits(policies: list[Obj], pod: dict[str, str], port: int, source: dict[str, str] | None) -> bool:
    """Whether ingress to ``pod`` on ``port`` is allowed from ``source``: the labels of a pod
    of the same namespace, or ``None`` for anything outside the namespace."""
    applicable = [
        p
        for p in policies
        if selects(p["spec"]["podSelector"], pod) and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not applicable:
        return True
    for policy in applicable:
        for rule in policy["spec"].get("ingress", []):
            if rule.get("ports") and not any(p.get("port") == port for p in rule["ports"]):
                continue
            peers = rule.get("from") or []
            if not peers:
                return True
            for peer in peers:
                if "ipBlock" in peer or "namespaceSelector" in peer:
                    if source is None:
                        return True
                elif source is not None and selects(peer["podSelector"], source):
                    return True
    return False


def listening_pods(objects: list[Obj]) -> list[tuple[str, dict[str, str], int]]:
    """Every (name, pod labels, port) the overlay serves, Strimzi's brokers included."""
    pods = []
    for workload in (o for o in objects if o["kind"] in ("Deployment", "StatefulSet")):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        for container in pod_spec(workload)["containers"]:
            for port in container.get("ports", []):
                pods.append((workload["metadata"]["name"], labels, port["containerPort"]))
    broker = {"strimzi.io/cluster": CLUSTER, "strimzi.io/kind": "Kafka", "strimzi.io/broker-role": "true"}
    (listener,) = one(objects, "Kafka", CLUSTER)["spec"]["kafka"]["listeners"]
    pods.append(("kafka", broker, listener["port"]))
    return pods


def test_ingress_is_denied_by_default(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    policies = of_kind(objects, "NetworkPolicy")
    deny = one(objects, "NetworkPolicy", "default-deny-ingress")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    unlisted = {"app.kubernetes.io/name": "something-new"}
    assert not admits(policies, unlisted, 8080, None)
    assert not admits(policies, unlisted, 8080, {"app.kubernetes.io/name": "receiver"})


def test_only_the_public_services_are_reachable_from_outside(overlay: tuple[str, list[Obj]]) -> None:
    name, objects = overlay
    policies = of_kind(objects, "NetworkPolicy")
    external = {
        (service, port)
        for service, labels, port in listening_pods(objects)
        if admits(policies, labels, port, None)
    }
    assert external == {(service, port_of(service)) for service in PUBLIC[name]}


def served_ports(objects: list[Obj]) -> list[tuple[str, dict[str, str], int]]:
    """Every (Service, pod labels, container port) the overlay's Services route to, and the
    brokers' listener: what the namespace's pods call (probe-only ports are not in it)."""
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    served = []
    for service in of_kind(objects, "Service"):
        selector = service["spec"]["selector"]
        (workload,) = [
            w
            for w in workloads
            if selects({"matchLabels": selector}, w["spec"]["template"]["metadata"]["labels"])
        ]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        named = {
            p["name"]: p["containerPort"]
            for c in pod_spec(workload)["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            served.append((service["metadata"]["name"], labels, named.get(target, target)))
    served.extend(item for item in listening_pods(objects) if item[0] == "kafka")
    return served


def test_namespace_pods_reach_every_service_kafka_and_jaeger(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    policies = of_kind(objects, "NetworkPolicy")
    served = served_ports(objects)
    assert {"kafka", "jaeger", *SERVICES} <= {name for name, _, _ in served}
    for source in SERVICES:
        source_labels = one(objects, "Deployment", source)["spec"]["template"]["metadata"]["labels"]
        for name, labels, port in served:
            assert admits(policies, labels, port, source_labels), f"{source} cannot reach {name}:{port}"


# --- what each overlay changes --------------------------------------------------------------


def test_dev_is_small_with_local_postgres_and_the_synthetic_reference(
    dev: list[Obj], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = config(dev)
    assert data["GENOMHUB_REFERENCE_PROFILE"] == "synthetic-v1"
    # The services are handed the synthetic reference an init container made in their pod.
    fasta = Path(data["GENOMHUB_REFERENCE_FASTA"])
    for name in ("validator", "harmoniser"):
        workload = one(dev, "Deployment", name)
        (init,) = pod_spec(workload)["initContainers"]
        assert init["image"] == IMAGE and "synthetic_reference" in " ".join(init["command"])
        cache = Path(settings_of(environment(dev, workload), monkeypatch, StateSettings).cache)
        assert fasta.is_relative_to(cache)
        made_in = [m["name"] for m in init["volumeMounts"] if cache.is_relative_to(m["mountPath"])]
        assert made_in == [writable_volume(workload, fasta)], name
    for deployment in of_kind(dev, "Deployment"):
        assert deployment["spec"]["replicas"] == 1
    (pool,) = of_kind(dev, "KafkaNodePool")
    assert pool["spec"]["replicas"] == 1
    harmoniser = pod_spec(one(dev, "Deployment", "harmoniser"))["containers"][0]
    assert harmoniser["resources"]["requests"]["memory"] == "256Mi"
    postgres = one(dev, "StatefulSet", "postgres")
    (postgres_port,) = one(dev, "Service", "postgres")["spec"]["ports"]
    for url in (secret(dev)[key] for key in sorted(SECRET_SETTINGS - {"GENOMHUB_TOKENS"})):
        parts = urlsplit(url)
        assert (parts.hostname, parts.port) == ("postgres", postgres_port["port"])
        assert parts.password == secret(dev, "postgres-dev")["POSTGRES_PASSWORD"]
    (postgres_container,) = pod_spec(postgres)["containers"]
    password = {e["name"]: e for e in postgres_container["env"]}["POSTGRES_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"] == {"name": "postgres-dev", "key": "POSTGRES_PASSWORD"}
    s3 = urlsplit(data["GENOMHUB_S3_ENDPOINT_URL"])
    assert s3.port in {p["port"] for p in one(dev, "Service", s3.hostname or "")["spec"]["ports"]}


def test_prod_scales_out_and_uses_grch38_external_postgres_and_sarek(
    prod: list[Obj], dev: list[Obj], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in SERVICES:  # a pod lost never stops a stage
        assert one(prod, "Deployment", name)["spec"]["replicas"] >= 2, name
    # More consumers than partitions of their input topic would sit idle.
    for name in SERVICES:
        assert one(prod, "Deployment", name)["spec"]["replicas"] <= default_partitions(), name
    for name in ("harmoniser", "indexer", "billing", "publisher"):  # the publisher: writer and standby
        assert one(prod, "Deployment", name)["spec"]["replicas"] == 2
    data = config(prod)
    assert data["GENOMHUB_REFERENCE_PROFILE"] == "GRCh38"
    fasta = data["GENOMHUB_REFERENCE_FASTA"]
    for name in ("validator", "harmoniser"):
        (container,) = pod_spec(one(prod, "Deployment", name))["containers"]
        assert any(
            fasta.startswith(m["mountPath"] + "/") and m.get("readOnly") for m in container["volumeMounts"]
        )
    assert not of_kind(prod, "StatefulSet")
    for key in SECRET_SETTINGS - {"GENOMHUB_TOKENS"}:
        assert secret(prod)[key] != secret(dev)[key]
    assert "GENOMHUB_HARMONISER_BACKEND" not in container_env(one(dev, "Deployment", "harmoniser"))
    harmoniser = one(prod, "Deployment", "harmoniser")
    settings = settings_of(environment(prod, harmoniser), monkeypatch, HarmoniserSettings)
    assert settings.backend == "sarek"
    # Nextflow's work dirs (under the harmoniser's state dir) and the site's executor config
    # are on the volume the HPC's tasks share.
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod_spec(harmoniser)["volumes"]
        if "persistentVolumeClaim" in v
    }
    shared = one(prod, "PersistentVolumeClaim", "genomhub-sarek-work")
    assert shared["spec"]["accessModes"] == ["ReadWriteMany"]
    assert (
        claims[writable_volume(harmoniser, settings.state.state_dir / "harmoniser" / "runs")]
        == "genomhub-sarek-work"
    )
    assert settings.sarek_config is not None
    assert claims[writable_volume(harmoniser, settings.sarek_config)] == "genomhub-sarek-work"
    types = {s["metadata"]["name"]: s["spec"]["type"] for s in of_kind(prod, "Service")}
    assert set(types.values()) == {"ClusterIP"}  # the receiver and access: through their Ingresses
    (pool,) = of_kind(prod, "KafkaNodePool")
    assert pool["spec"]["replicas"] == 3


def test_prod_secrets_come_only_from_the_operator(tmp_path: Any) -> None:
    tree = prod_tree(tmp_path)
    (tree / "overlays" / "prod" / "secrets.env").unlink()
    with pytest.raises(KustomizeError, match=r"secrets\.env"):
        render(tree / "overlays" / "prod")
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(K8S / "overlays" / "prod" / "secrets.env")], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0, "k8s/overlays/prod/secrets.env must be git-ignored"
    template = (K8S / "overlays" / "prod" / "secrets.env.example").read_text().splitlines()
    values = dict(line.split("=", 1) for line in template if line and not line.startswith("#"))
    assert set(secret(render(K8S / "overlays" / "dev"))) <= set(values)
    assert all("<" in value for value in values.values()), "the template must hold placeholders only"


def ingress_paths(ingress: Obj) -> list[Obj]:
    return [path for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]]


def ingress_of(objects: list[Obj], service: str) -> Obj:
    """The one Ingress that routes to ``service``."""
    (ingress,) = [
        i
        for i in of_kind(objects, "Ingress")
        if any(p["backend"]["service"]["name"] == service for p in ingress_paths(i))
    ]
    return ingress


def routed(path: Obj, route: str) -> bool:
    """Whether an Ingress path takes requests for ``route`` (a declared route's path, its
    parameters in braces): ``Exact`` the same path, ``Prefix`` matched element by element, as
    the Ingress API defines them."""
    if path["pathType"] == "Exact":
        return bool(path["path"] == route)
    assert path["pathType"] == "Prefix", f"{path['path']}: {path['pathType']} means what the controller likes"
    prefix = [element for element in path["path"].split("/") if element]
    return [element for element in route.split("/") if element][: len(prefix)] == prefix


def test_prod_routes_only_the_public_services_each_on_its_own_ingress_and_host(prod: list[Obj]) -> None:
    """Every path of every Ingress goes to a public service's Service port; each public service
    has one Ingress of its own (ingress-nginx's proxy-ssl-* annotations, which name the
    backend's certificate, are per Ingress) on a public name of its own."""
    hosts: dict[str, set[str]] = {}
    for ingress in of_kind(prod, "Ingress"):
        backends = {p["backend"]["service"]["name"] for p in ingress_paths(ingress)}
        assert len(backends) == 1, f"Ingress {ingress['metadata']['name']} routes to {sorted(backends)}"
        (service,) = backends
        assert service in PUBLIC["prod"], f"Ingress {ingress['metadata']['name']} exposes {service}"
        assert service not in hosts, f"{service} has more than one Ingress"
        hosts[service] = {rule["host"] for rule in ingress["spec"]["rules"]}
        (service_port,) = one(prod, "Service", service)["spec"]["ports"]
        for path in ingress_paths(ingress):
            assert path["backend"]["service"]["port"] == {"name": service_port["name"]}
    assert set(hosts) == PUBLIC["prod"]
    assert not hosts["receiver"] & hosts["access"], "each public service on a name of its own"


@pytest.mark.parametrize("service", sorted(PUBLIC["prod"]))
def test_prod_exposes_each_public_service_only_through_tls(
    prod: list[Obj], monkeypatch: pytest.MonkeyPatch, service: str
) -> None:
    """The regions reach the receiver, and clinicians, browsers and the spokes' portals the
    access service, only by an Ingress that ends TLS with a cert-manager certificate,
    re-encrypts to the pods (which serve TLS themselves, with a certificate the controller
    verifies), and no NetworkPolicy admits anything else from outside on the service's port."""
    port = port_of(service)
    ingress = ingress_of(prod, service)
    (tls,) = ingress["spec"]["tls"]
    certificates = {c["spec"]["secretName"]: c for c in of_kind(prod, "Certificate")}
    public = certificates[tls["secretName"]]
    assert set(tls["hosts"]) == set(public["spec"]["dnsNames"])
    assert public["spec"]["issuerRef"]["kind"] in ("ClusterIssuer", "Issuer")
    for rule in ingress["spec"]["rules"]:
        assert rule["host"] in tls["hosts"]
        for path in rule["http"]["paths"]:
            assert path["backend"]["service"]["name"] == service
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/backend-protocol"] == "HTTPS"
    assert notes["nginx.ingress.kubernetes.io/proxy-ssl-verify"] == "on"
    assert notes["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"
    assert notes["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"  # streamed, not spooled
    if service in STREAMED_ANSWERS:
        assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"

    # The paths take every route the service's API declares, and nothing it does not: no
    # probe, no metrics, no OpenAPI document.
    paths = ingress_paths(ingress)
    declared = [r.path for _, r in PUBLIC_APIS[service].routes()]
    for route in declared:
        assert any(routed(p, route) for p in paths), f"{service}: {route} is not reachable"
    for path in paths:
        assert any(routed(path, route) for route in declared), f"{service}: {path['path']} routes nothing"
        for unlisted in (*PROBES, OPENAPI_PATH):
            assert not routed(path, unlisted), f"{service}: {path['path']} exposes {unlisted}"

    # The pods serve TLS with the certificate whose CA the controller verifies them against.
    deployment = one(prod, "Deployment", service)
    http = settings_of(environment(prod, deployment), monkeypatch, HttpSettings)
    assert http.tls_cert is not None and http.tls_key is not None
    (container,) = pod_spec(deployment)["containers"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    mount = mounts[str(http.tls_cert.parent)]
    assert mount.get("readOnly") and http.tls_key.parent == http.tls_cert.parent
    (volume,) = [v for v in pod_spec(deployment)["volumes"] if v["name"] == mount["name"]]
    internal = certificates[volume["secret"]["secretName"]]
    assert internal is not public
    assert service in internal["spec"]["dnsNames"]  # the certificate of this Service's name
    issuer = one(prod, internal["spec"]["issuerRef"]["kind"], internal["spec"]["issuerRef"]["name"])
    assert "ca" in issuer["spec"], "the pods' certificate is the namespace CA's"
    assert (
        notes["nginx.ingress.kubernetes.io/proxy-ssl-secret"] == f"genomhub/{volume['secret']['secretName']}"
    )
    assert notes["nginx.ingress.kubernetes.io/proxy-ssl-name"] in internal["spec"]["dnsNames"]
    for probe in (container["livenessProbe"], container["readinessProbe"]):
        assert probe["httpGet"]["scheme"] == "HTTPS"

    # From outside the namespace, the port admits the ingress controller's namespace and
    # nothing else.
    for policy in of_kind(prod, "NetworkPolicy"):
        if not selects(policy["spec"]["podSelector"], deployment["spec"]["template"]["metadata"]["labels"]):
            continue
        for rule in policy["spec"].get("ingress", []):
            if rule.get("ports") and not any(p.get("port") == port for p in rule["ports"]):
                continue
            assert rule.get("from"), f"{policy['metadata']['name']} admits {port} from anywhere"
            for peer in rule["from"]:
                assert "ipBlock" not in peer
                if "namespaceSelector" in peer:
                    assert peer["namespaceSelector"] == {
                        "matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}
                    }


def test_prod_access_issues_on_its_public_name(prod: list[Obj], monkeypatch: pytest.MonkeyPatch) -> None:
    """The working copies' URLs are the request's origin, https:// since the pods serve TLS,
    on the Host the controller passes on: the Ingress's. The Passports' issuer, where its
    /.well-known/jwks.json is fetched, is set to that same origin."""
    (host,) = {rule["host"] for rule in ingress_of(prod, "access")["spec"]["rules"]}
    deployment = one(prod, "Deployment", "access")
    settings = settings_of(environment(prod, deployment), monkeypatch, AccessSettings)
    assert settings.passport_issuer == f"https://{host}"
    assert settings.http.tls_cert is not None


def test_prod_keeps_a_replica_of_each_service_through_a_drain(prod: list[Obj], dev: list[Obj]) -> None:
    """A PodDisruptionBudget per service that selects exactly its pods and leaves room to evict
    one (minAvailable below the replicas); the migrations stay the one db-upgrade Job."""
    budgets = {b["metadata"]["name"]: b for b in of_kind(prod, "PodDisruptionBudget")}
    assert set(budgets) == set(SERVICES)
    for name in SERVICES:
        deployment = one(prod, "Deployment", name)
        budget = budgets[name]["spec"]
        assert budget["minAvailable"] == 1 and "maxUnavailable" not in budget
        assert budget["minAvailable"] < deployment["spec"]["replicas"], "a drain must be able to evict one"
        pods = deployment["spec"]["template"]["metadata"]["labels"]
        assert selects(budget["selector"], pods), name
        others = [one(prod, "Deployment", s) for s in SERVICES if s != name]
        assert not any(
            selects(budget["selector"], o["spec"]["template"]["metadata"]["labels"]) for o in others
        )
    assert not of_kind(dev, "PodDisruptionBudget"), "dev runs one of each: a budget would block every drain"
    (job,) = of_kind(prod, "Job")
    assert job["metadata"]["name"] == "db-upgrade"
