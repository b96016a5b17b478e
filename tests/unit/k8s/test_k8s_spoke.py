"""A region's spoke site (``k8s/overlays/spoke``): its own Kafka cluster, MirrorMaker 2
copying the region's feed to it from the hub's, and the spoke service, rendered with the real
``kubectl kustomize`` and checked without a cluster: the example (Syddanmark) as checked in,
and each other region as its one region setting (``GENOMHUB_SPOKE_REGION``) renders it.

A spoke is the registry's principal ``spoke-<region>`` (``shared.topics.spoke_principal``), on
its own cluster and on the hub's, and its site holds and may read its own region's feed only:
another region's feed holds that region's records whole.

Strimzi 1.x serves only ``kafka.strimzi.io/v1``, whose ``KafkaMirrorMaker2`` has no
``connectCluster``: the Connect cluster is always its ``target``, here the spoke's cluster.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError
from pydantic import SecretStr

from services.spoke.hub import HubAccess
from shared.bus import Service
from shared.config import KafkaSettings, Section, SpokeSettings, every_variable
from shared.events import Region, SpokeRevisionApplied
from shared.kafka import Credentials, KafkaAccess, kafka_access
from shared.topics import (
    SPOKE,
    all_topics,
    feed_topic,
    grants_of,
    kafka_user,
    spoke_feeds,
    spoke_principal,
    topic_name,
)
from tests.unit.k8s.k8s_objects import K8S, Obj, of_kind, one, only_container, render, rendered_texts
from tests.unit.k8s.test_k8s_manifests import (
    IMAGE,
    admits,
    ingress_of,
    selects,
    settings_of,
    writable_volume,
)
from tests.unit.k8s.test_k8s_schemas import KUBERNETES_RELEASES, core
from tools.k8s.topics import CLUSTER, default_partitions, kafka_topic
from tools.k8s.users import acl
from tools.kafka.mirror import FEED_TOPICS, HUB, mirror_properties
from tools.kafka.mirror import SPOKE as SPOKE_ALIAS

OVERLAY = K8S / "overlays" / "spoke"
HUB_MIRROR_USER = OVERLAY / "hub" / "mirror-user.yaml"
EXAMPLE = Region.SYDDANMARK  # the region the overlay is checked in for
REGION_SETTING = "GENOMHUB_SPOKE_REGION={}"
# The site's namespace and cluster: they name the site, no principal (the spoke's user is
# kafka_user(spoke_principal(region))).
NAMESPACE = "genomhub-spoke"
SPOKE_CLUSTER = "genomhub-spoke"
CONFIG = "genomhub-spoke-config"
MIRROR = "genomhub-mirror"
MIRROR_USER = "genomhub-mirror"
# What the operators create by hand (k8s/README.md, "A spoke site"), never rendered:
HUB_CREDENTIALS = "genomhub-hub-credentials"  # the hub's cluster CA and the two hub passwords
SITE_SECRET = "genomhub-spoke-secrets"  # the catalogue's database URL and the token hashes
PUBLIC_KEY = "genomhub-hub-public-key"  # the hub's public key the spoke pins (a ConfigMap)
MIRROR_POD = {"strimzi.io/cluster": MIRROR, "strimzi.io/kind": "KafkaMirrorMaker2"}
BROKER_POD = {
    "strimzi.io/cluster": SPOKE_CLUSTER,
    "strimzi.io/kind": "Kafka",
    "strimzi.io/broker-role": "true",
}
FEEDS = {t.name for t in spoke_feeds(1)}


def strimzi_secrets(region: Region) -> set[str]:
    """What Strimzi makes on the spoke's cluster: its CA and each KafkaUser's password."""
    return {f"{SPOKE_CLUSTER}-cluster-ca-cert", kafka_user(spoke_principal(region)), MIRROR_USER}


def overlay_for(region: Region, tmp: Path) -> Path:
    """A copy of the overlay whose one region setting names ``region``."""
    tree = tmp / "spoke"
    shutil.copytree(OVERLAY, tree)
    kustomization = tree / "kustomization.yaml"
    text = kustomization.read_text()
    assert text.count(REGION_SETTING.format(EXAMPLE.value)) == 1
    kustomization.write_text(
        text.replace(REGION_SETTING.format(EXAMPLE.value), REGION_SETTING.format(region.value))
    )
    return tree


@pytest.fixture(scope="module")
def spoke() -> list[Obj]:
    return render(OVERLAY)


@pytest.fixture(scope="module", params=list(Region), ids=lambda r: str(r.value))
def site(
    request: pytest.FixtureRequest, spoke: list[Obj], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Region, list[Obj]]:
    """Each region's site: the example as checked in, every other one as its setting renders it."""
    region: Region = request.param
    if region is EXAMPLE:
        return region, spoke
    return region, render(overlay_for(region, tmp_path_factory.mktemp(region.value)))


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def config(objects: list[Obj]) -> dict[str, str]:
    data: dict[str, str] = one(objects, "ConfigMap", CONFIG)["data"]
    return data


def the_mirror(objects: list[Obj]) -> Obj:
    (mirror,) = of_kind(objects, "KafkaMirrorMaker2")
    return mirror


def the_source(objects: list[Obj]) -> Obj:
    (flow,) = the_mirror(objects)["spec"]["mirrors"]
    source: Obj = flow["source"]
    return source


def listener(objects: list[Obj]) -> Obj:
    (found,) = one(objects, "Kafka", SPOKE_CLUSTER)["spec"]["kafka"]["listeners"]
    return found  # type: ignore[no-any-return]


def secret_refs(container: Obj) -> dict[str, dict[str, str]]:
    """Each variable the container takes from a Secret -> the Secret's name and key."""
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def spoke_environment(objects: list[Obj]) -> dict[str, str]:
    """What the spoke's container starts with: its ConfigMap, its own env, and a stand-in for
    each value the operators' Secrets hold."""
    container = only_container(one(objects, "Deployment", "spoke"))
    literal = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    stand_ins = {
        "GENOMHUB_SPOKE_DATABASE_URL": "postgresql://spoke:from-the-secret@db.example:5432/spoke",
        "GENOMHUB_TOKENS": "{}",
    }
    secrets = {name: stand_ins.get(name, "from-the-secret") for name in secret_refs(container)}
    return {**config(objects), **literal, **secrets}


def mount_of(workload: Obj, path: Path) -> tuple[Obj, Obj]:
    """The read-only mount ``path`` is on, and its volume."""
    container = only_container(workload)
    mounts = [m for m in container["volumeMounts"] if path.is_relative_to(m["mountPath"])]
    assert mounts, f"{path} is on no volume"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    assert mount.get("readOnly") is True, f"{path} must be on a read-only mount"
    (volume,) = [v for v in pod_spec(workload)["volumes"] if v["name"] == mount["name"]]
    return mount, volume


def item_of(mount: Obj, volume: Obj, path: Path) -> tuple[str, str]:
    """(source, key) of the file ``path``: the Secret or ConfigMap it comes from and its key."""
    kind = "secret" if "secret" in volume else "configMap"
    name = volume[kind]["secretName"] if kind == "secret" else volume[kind]["name"]
    items = {i["path"]: i["key"] for i in volume[kind]["items"]}
    return name, items[str(path.relative_to(mount["mountPath"]))]


def sections_read_by(section: type[Section]) -> set[type[Section]]:
    """``section`` and the parts it reads, theirs included."""
    found = {section}
    for field in section.model_fields.values():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, Section):
            found |= sections_read_by(annotation)
    return found


def topic_acls(user: Obj) -> dict[tuple[str, str, str], set[str]]:
    """A KafkaUser's ACLs: (type, name, pattern) -> operations."""
    found: dict[tuple[str, str, str], set[str]] = {}
    for entry in user["spec"]["authorization"]["acls"]:
        resource = entry["resource"]
        key = (resource["type"], resource.get("name", ""), resource.get("patternType", "literal"))
        found.setdefault(key, set()).update(entry["operations"])
    return found


# --- the overlay as a whole --------------------------------------------------------------


def test_the_overlay_renders_the_spoke_site_alone_in_its_namespace(spoke: list[Obj]) -> None:
    one(spoke, "Namespace", NAMESPACE)
    for obj in spoke:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]
            assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "genomhub"
    # Of genomhub's services only the spoke: none of the hub's base is in it.
    assert [d["metadata"]["name"] for d in of_kind(spoke, "Deployment")] == ["spoke"]
    assert not of_kind(spoke, "Job") and not of_kind(spoke, "StatefulSet")
    assert [k["metadata"]["name"] for k in of_kind(spoke, "Kafka")] == [SPOKE_CLUSTER]


@pytest.mark.parametrize("release", KUBERNETES_RELEASES)
def test_core_objects_match_the_kubernetes_schemas(spoke: list[Obj], release: str) -> None:
    assert core(spoke)
    for obj in core(spoke):
        try:
            kubernetes_validate.validate(obj, release, strict=True)
        except SchemaNotFoundError:
            pytest.fail(f"no Kubernetes {release} schema for {obj['apiVersion']} {obj['kind']}")


# --- the spoke's Kafka cluster ------------------------------------------------------------


def test_the_spoke_cluster_is_kraft_with_the_hubs_listener(spoke: list[Obj], dev: list[Obj]) -> None:
    kafka = one(spoke, "Kafka", SPOKE_CLUSTER)
    hub = one(dev, "Kafka", CLUSTER)
    assert kafka["apiVersion"] == "kafka.strimzi.io/v1"
    assert kafka["metadata"]["annotations"] == hub["metadata"]["annotations"]
    for field in ("version", "metadataVersion", "listeners", "authorization"):
        assert kafka["spec"]["kafka"][field] == hub["spec"]["kafka"][field], field
    assert listener(spoke)["authentication"] == {"type": "scram-sha-512"}
    assert kafka["spec"]["kafka"]["authorization"] == {"type": "simple"}
    assert {"topicOperator", "userOperator"} <= set(kafka["spec"]["entityOperator"])
    (pool,) = of_kind(spoke, "KafkaNodePool")
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == SPOKE_CLUSTER
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    settings = kafka["spec"]["kafka"]["config"]
    assert 1 <= settings["min.insync.replicas"] <= settings["default.replication.factor"]
    assert settings["default.replication.factor"] <= pool["spec"]["replicas"]
    assert settings["auto.create.topics.enable"] is False


def test_the_spoke_clusters_topics_are_exactly_the_regions_feed_as_on_the_hub(
    site: tuple[Region, list[Obj]], dev: list[Obj]
) -> None:
    region, objects = site
    # The region's own feed, and no other region's: another's holds its records whole.
    (topic,) = of_kind(objects, "KafkaTopic")
    (feed,) = [t for t in spoke_feeds(default_partitions()) if t.name == feed_topic(region)]
    expected = kafka_topic(feed, SPOKE_CLUSTER)
    assert topic["spec"]["topicName"] == feed_topic(region) in FEEDS
    assert topic["apiVersion"] == expected["apiVersion"]
    assert topic["metadata"]["name"] == expected["metadata"]["name"]
    assert topic["metadata"]["labels"]["strimzi.io/cluster"] == SPOKE_CLUSTER
    assert topic["spec"] == expected["spec"]
    assert topic["spec"]["config"]["cleanup.policy"] == "compact"
    # MM2 keeps partition numbers: the copy has the hub's partitions and configs.
    (hub,) = [t for t in of_kind(dev, "KafkaTopic") if t["spec"]["topicName"] == feed_topic(region)]
    assert topic["spec"] == hub["spec"]


def test_the_spoke_cluster_has_the_spokes_and_the_mirrors_users_only(site: tuple[Region, list[Obj]]) -> None:
    region, objects = site
    names = {u["metadata"]["name"] for u in of_kind(objects, "KafkaUser")}
    assert names == {kafka_user(spoke_principal(region)), MIRROR_USER}
    assert kafka_user(spoke_principal(region)) == f"genomhub-spoke-{region.value}"
    assert kafka_user(SPOKE) not in names  # no principal "spoke" shared by the regions


def test_the_spoke_user_has_its_regions_grants_and_reads_its_feed_alone(
    site: tuple[Region, list[Obj]],
) -> None:
    region, objects = site
    principal = spoke_principal(region)
    user = one(objects, "KafkaUser", kafka_user(principal))
    assert user["metadata"]["labels"]["strimzi.io/cluster"] == SPOKE_CLUSTER
    assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
    assert user["spec"]["authorization"]["type"] == "simple"
    # Exactly the registry's grants of spoke-<region>, as the hub's KafkaUser of the same name
    # has them (its write of spoke-revision-applied is used on the hub's cluster).
    rendered = sorted(json.dumps(a, sort_keys=True) for a in user["spec"]["authorization"]["acls"])
    assert rendered == sorted(json.dumps(acl(g), sort_keys=True) for g in grants_of(principal))
    acls = topic_acls(user)
    assert acls == {
        ("topic", feed_topic(region), "literal"): {"Read", "Describe"},
        ("topic", topic_name(SpokeRevisionApplied), "literal"): {"Write", "Describe"},
        ("cluster", "", "literal"): {"IdempotentWrite"},
    }
    # It reads its own region's feed, in no group, and nothing else.
    assert {name for (_, name, _), operations in acls.items() if "Read" in operations} == {feed_topic(region)}
    assert not [key for key in acls if key[0] == "group"]


def test_the_mirror_user_has_connects_topics_its_offset_syncs_and_writes_the_regions_feed(
    site: tuple[Region, list[Obj]],
) -> None:
    region, objects = site
    user = one(objects, "KafkaUser", MIRROR_USER)
    assert user["metadata"]["labels"]["strimzi.io/cluster"] == SPOKE_CLUSTER
    target = the_mirror(objects)["spec"]["target"]
    acls = topic_acls(user)
    assert acls.pop(("group", target["groupId"], "literal")) >= {"Read"}
    for field in ("configStorageTopic", "offsetStorageTopic", "statusStorageTopic"):
        assert acls.pop(("topic", target[field], "literal")) >= {"Create", "Read", "Write", "DescribeConfigs"}
    assert acls.pop(("topic", "mm2-offset-syncs.", "prefix")) >= {"Create", "Write", "DescribeConfigs"}
    # The region's feed alone: written, created if missing, its configs synced; never read
    # or deleted. No other region's feed may be made or written here.
    assert acls == {
        ("topic", feed_topic(region), "literal"): {
            "Create",
            "Write",
            "Describe",
            "DescribeConfigs",
            "Alter",
            "AlterConfigs",
        }
    }


# --- MirrorMaker 2 ---------------------------------------------------------------------------


def test_one_mirror_from_the_hub_to_the_spoke_as_the_local_mm2(spoke: list[Obj]) -> None:
    mirror = the_mirror(spoke)
    assert mirror["apiVersion"] == "kafka.strimzi.io/v1"
    spec = mirror["spec"]
    assert "connectCluster" not in spec and "clusters" not in spec  # v1beta2 only
    assert spec["version"] == one(spoke, "Kafka", SPOKE_CLUSTER)["spec"]["kafka"]["version"]
    # The Connect cluster, and the one target: the spoke's own cluster.
    target = spec["target"]
    assert target["alias"] == SPOKE_ALIAS
    assert target["bootstrapServers"] == f"{SPOKE_CLUSTER}-kafka-bootstrap:{listener(spoke)['port']}"
    assert target["bootstrapServers"] == config(spoke)["GENOMHUB_KAFKA_BOOTSTRAP"]
    assert target["tls"]["trustedCertificates"] == [
        {"secretName": f"{SPOKE_CLUSTER}-cluster-ca-cert", "certificate": "ca.crt"}
    ]
    assert target["authentication"] == {
        "type": "scram-sha-512",
        "username": MIRROR_USER,
        "passwordSecret": {"secretName": MIRROR_USER, "password": "password"},
    }
    for converter in ("key.converter", "value.converter", "header.converter"):  # byte for byte
        assert target["config"][converter] == "org.apache.kafka.connect.converters.ByteArrayConverter"
    # One mirror, from the hub, of the example region's feed only.
    (flow,) = spec["mirrors"]
    assert flow["source"]["alias"] == HUB
    example = re.escape(feed_topic(EXAMPLE))
    assert flow["topicsPattern"] == example == r"genomhub\.spoke\.syddanmark\.catalogue\.v1"
    assert "groupsPattern" not in flow and flow["groupsExcludePattern"] == ".*"
    # No checkpoints (no groups to translate), and v1 has no heartbeat connector.
    assert set(flow) == {"source", "sourceConnector", "topicsPattern", "groupsExcludePattern"}
    connector = flow["sourceConnector"]["config"]
    assert connector["refresh.topics.interval.seconds"] > 0
    assert connector["replication.factor"] == connector["offset-syncs.topic.replication.factor"] == -1


def local_settings(topics: str) -> dict[str, str]:
    """The local MM2's properties (tools/kafka/mirror.py) for ``topics``, to compare with the CR's."""
    access = KafkaAccess("127.0.0.1:9", "admin", Credentials("admin", "unused"), "SASL_PLAINTEXT")
    found = {}
    for line in mirror_properties(access, access, topics).splitlines():
        key, _, value = line.partition("=")
        found[key.strip()] = value.strip()
    return found


def test_the_source_connector_keeps_names_reads_committed_and_books_on_the_target(
    spoke: list[Obj],
) -> None:
    (flow,) = the_mirror(spoke)["spec"]["mirrors"]
    connector: dict[str, Any] = flow["sourceConnector"]["config"]
    local = local_settings(flow["topicsPattern"])
    assert connector["replication.policy.class"] == local["replication.policy.class"]
    assert (
        connector["replication.policy.class"] == "org.apache.kafka.connect.mirror.IdentityReplicationPolicy"
    )
    assert connector["offset-syncs.topic.location"] == local["offset-syncs.topic.location"] == "target"
    assert connector["sync.topic.acls.enabled"] == local["sync.topic.acls.enabled"] == "false"
    # The local MM2's setting of the pattern; the local stack mirrors every feed
    # (FEED_TOPICS) to its one local spoke, a site only its region's, within it.
    assert local[f"{HUB}->{SPOKE_ALIAS}.topics"] == flow["topicsPattern"]
    assert re.fullmatch(FEED_TOPICS, feed_topic(EXAMPLE))
    assert local["groups.exclude"] == flow["groupsExcludePattern"]
    assert local["emit.heartbeats.enabled"] == "false"
    # The hub's publisher writes the feeds in transactions: MM2's consumer of the hub reads
    # committed records only. MM2 builds that consumer from the connector's
    # `source.consumer.*` (the local `hub.consumer.*`); the hub cluster's own `config`
    # reaches it as `source.cluster.*`, of which MM2 keeps only the connection settings.
    assert connector["source.consumer.isolation.level"] == local[f"{HUB}.consumer.isolation.level"]
    assert connector["source.consumer.isolation.level"] == "read_committed"
    assert not any("isolation" in key for key in flow["source"].get("config", {}))


def test_the_mirror_reads_the_hub_as_the_user_the_hub_issued(spoke: list[Obj], dev: list[Obj]) -> None:
    source = the_source(spoke)
    data = config(spoke)
    region = Region(data["GENOMHUB_SPOKE_REGION"])
    # The same broker the spoke acknowledges to: the hub's external listener.
    assert source["bootstrapServers"] == data["GENOMHUB_SPOKE_HUB_KAFKA_BOOTSTRAP"]
    assert source["tls"]["trustedCertificates"] == [{"secretName": HUB_CREDENTIALS, "certificate": "ca.crt"}]
    authentication = source["authentication"]
    assert authentication["type"] == "scram-sha-512"
    assert authentication["passwordSecret"] == {"secretName": HUB_CREDENTIALS, "password": "mirror-password"}
    # The hub-side KafkaUser the hub's operator applies: this region's feed, read only.
    (user,) = yaml.safe_load_all(HUB_MIRROR_USER.read_text())
    assert user["kind"] == "KafkaUser" and user["apiVersion"] == "kafka.strimzi.io/v1"
    assert user["metadata"]["name"] == authentication["username"] == f"genomhub-mirror-{region.value}"
    assert user["metadata"]["labels"]["strimzi.io/cluster"] == CLUSTER
    assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
    assert topic_acls(user) == {
        ("topic", feed_topic(region), "literal"): {"Read", "Describe", "DescribeConfigs"}
    }
    assert user["metadata"]["name"] not in {u["metadata"]["name"] for u in of_kind(dev, "KafkaUser")}


def test_the_mirrors_pattern_matches_the_regions_feed_and_no_other_regions(
    site: tuple[Region, list[Obj]],
) -> None:
    region, objects = site
    (flow,) = the_mirror(objects)["spec"]["mirrors"]
    pattern = flow["topicsPattern"]
    # Exactly the feed's name, its dots escaped (MM2 matches a topic's whole name).
    assert pattern == re.escape(feed_topic(region))
    mirrored = {t.name for t in all_topics(default_partitions()) if re.fullmatch(pattern, t.name)}
    assert mirrored == {feed_topic(region)}
    for other in Region:
        assert bool(re.fullmatch(pattern, feed_topic(other))) is (other is region), other
    # An unescaped dot would match any character: nothing merely like the name matches.
    assert not re.fullmatch(pattern, feed_topic(region).replace(".", "x"))
    assert not re.fullmatch(pattern, feed_topic(region) + ".dlq")


def test_the_mirror_reads_the_hub_as_its_regions_user(site: tuple[Region, list[Obj]], dev: list[Obj]) -> None:
    region, objects = site
    authentication = the_source(objects)["authentication"]
    assert authentication["username"] == f"genomhub-mirror-{region.value}"
    assert authentication["passwordSecret"] == {"secretName": HUB_CREDENTIALS, "password": "mirror-password"}
    assert authentication["username"] not in {u["metadata"]["name"] for u in of_kind(dev, "KafkaUser")}


def test_another_region_sets_its_region_in_one_place(tmp_path: Path) -> None:
    objects = render(overlay_for(Region.NORDJYLLAND, tmp_path))
    region = Region.NORDJYLLAND
    data = config(objects)
    assert data["GENOMHUB_SPOKE_REGION"] == region.value
    assert the_source(objects)["authentication"]["username"] == "genomhub-mirror-nordjylland"
    # The spoke's user on both brokers, the feed the site holds and the mirror's pattern.
    principal = spoke_principal(region)
    assert kafka_user(principal) == "genomhub-spoke-nordjylland"
    assert data["GENOMHUB_SPOKE_HUB_KAFKA_USERNAME"] == kafka_user(principal)
    user = kafka_user(principal)
    container = only_container(one(objects, "Deployment", "spoke"))
    assert {e["name"]: e.get("value") for e in container["env"]}["GENOMHUB_KAFKA_USERNAME"] == user
    assert secret_refs(container)["GENOMHUB_KAFKA_PASSWORD"] == {"name": user, "key": "password"}
    one(objects, "KafkaUser", kafka_user(principal))
    assert [t["spec"]["topicName"] for t in of_kind(objects, "KafkaTopic")] == [
        "genomhub.spoke.nordjylland.catalogue.v1"
    ]
    (flow,) = the_mirror(objects)["spec"]["mirrors"]
    assert flow["topicsPattern"] == r"genomhub\.spoke\.nordjylland\.catalogue\.v1"
    # Nothing names the example's region.
    assert EXAMPLE.value not in json.dumps(objects)


def test_no_other_region_is_named_at_a_site(site: tuple[Region, list[Obj]]) -> None:
    """Not its feed, its users or its mirror: a site holds and reads its own region's alone."""
    region, objects = site
    text = json.dumps(objects)
    assert region.value in text
    for other in Region:
        if other is not region:
            assert other.value not in text, other
            assert feed_topic(other) not in text, other


# --- the spoke service -----------------------------------------------------------------------


def test_the_spoke_runs_run_spoke_with_settings_its_section_reads(
    spoke: list[Obj], monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = one(spoke, "Deployment", "spoke")
    container = only_container(deployment)
    assert container["image"] == IMAGE
    assert container["args"] == ["run", "spoke"]
    assert container["envFrom"] == [{"configMapRef": {"name": CONFIG}}]
    env = spoke_environment(spoke)
    assert env["GENOMHUB_SPOKE_REGION"] == Region.SYDDANMARK.value
    known = every_variable()
    read = sections_read_by(SpokeSettings)
    for variable in (k for k in env if k.startswith("GENOMHUB_")):
        assert variable in known, f"{variable} is no setting of shared/config.py"
        assert known[variable][0] in read, f"{variable} is not read by SpokeSettings"
    assert "GENOMHUB_SPOKE_PORT" not in env  # the Service and probes assume the default
    settings = settings_of(env, monkeypatch, SpokeSettings)
    assert settings.region is Region.SYDDANMARK
    assert settings.http.host == "0.0.0.0"
    assert settings.database_url == env["GENOMHUB_SPOKE_DATABASE_URL"]  # the site's PostgreSQL
    writable_volume(deployment, settings.state.state_dir)
    writable_volume(deployment, settings.state.cache)


def test_the_spoke_reaches_its_own_broker_as_its_regions_user(
    site: tuple[Region, list[Obj]], monkeypatch: pytest.MonkeyPatch
) -> None:
    region, objects = site
    principal = spoke_principal(region)  # as services/spoke/app.py's build()
    deployment = one(objects, "Deployment", "spoke")
    settings = settings_of(spoke_environment(objects), monkeypatch, SpokeSettings)
    assert settings.region is region
    assert settings.kafka.bootstrap == f"{SPOKE_CLUSTER}-kafka-bootstrap:{listener(objects)['port']}"
    access = kafka_access(principal, settings.kafka, settings.state)
    assert access.security_protocol == "SASL_SSL"
    assert access.credentials is not None and access.credentials.username == kafka_user(principal)
    one(objects, "KafkaUser", kafka_user(principal))
    refs = secret_refs(only_container(deployment))
    assert refs["GENOMHUB_KAFKA_PASSWORD"] == {"name": kafka_user(principal), "key": "password"}
    assert settings.kafka.ca_file is not None
    mount, volume = mount_of(deployment, settings.kafka.ca_file)
    assert item_of(mount, volume, settings.kafka.ca_file) == (f"{SPOKE_CLUSTER}-cluster-ca-cert", "ca.crt")


def test_the_spoke_acknowledges_to_the_hub_as_the_hubs_user_of_its_region(
    site: tuple[Region, list[Obj]], dev: list[Obj], monkeypatch: pytest.MonkeyPatch
) -> None:
    region, objects = site
    principal = spoke_principal(region)
    deployment = one(objects, "Deployment", "spoke")
    settings = settings_of(spoke_environment(objects), monkeypatch, SpokeSettings)
    hub = settings.hub_kafka
    assert hub.bootstrap == the_source(objects)["bootstrapServers"]
    assert hub.security_protocol == "SASL_SSL"
    assert hub.username == kafka_user(principal) == settings.kafka.username
    # The hub's own, from k8s/base/kafka/users.yaml, with the same grants; none shared by
    # the regions.
    user = one(dev, "KafkaUser", kafka_user(principal))
    rendered = sorted(json.dumps(a, sort_keys=True) for a in user["spec"]["authorization"]["acls"])
    assert rendered == sorted(json.dumps(acl(g), sort_keys=True) for g in grants_of(principal))
    assert kafka_user(SPOKE) not in {u["metadata"]["name"] for u in of_kind(dev, "KafkaUser")}
    refs = secret_refs(only_container(deployment))
    assert refs["GENOMHUB_SPOKE_HUB_KAFKA_PASSWORD"] == {"name": HUB_CREDENTIALS, "key": "spoke-password"}
    # The hub's cluster CA, the same file MirrorMaker 2 trusts, and none of the passwords.
    assert hub.ca_file is not None
    mount, volume = mount_of(deployment, hub.ca_file)
    assert item_of(mount, volume, hub.ca_file) == (HUB_CREDENTIALS, "ca.crt")
    assert [i["key"] for i in volume["secret"]["items"]] == ["ca.crt"]


def test_the_spoke_pins_the_hubs_public_key_from_its_configmap(
    spoke: list[Obj], monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = one(spoke, "Deployment", "spoke")
    settings = settings_of(spoke_environment(spoke), monkeypatch, SpokeSettings)
    pinned = settings.pinned_path()
    assert pinned == settings.hub_public_key  # the mounted file, not <home>/keys on its /tmp
    mount, volume = mount_of(deployment, pinned)
    assert "configMap" in volume
    assert item_of(mount, volume, pinned) == (PUBLIC_KEY, "hub.pub")
    # The operator's, from the hub's hub.pub: never rendered from the repository.
    assert PUBLIC_KEY not in {c["metadata"]["name"] for c in of_kind(spoke, "ConfigMap")}


def test_the_portal_asks_the_hubs_access_service_over_https(
    spoke: list[Obj], prod: list[Obj], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The region's portal asks the hub's access service with the signed-in person's token:
    at an https:// URL the spoke's own client accepts, the public name the hub's prod overlay
    gives the access service's Ingress."""
    deployment = one(spoke, "Deployment", "spoke")
    settings = settings_of(spoke_environment(spoke), monkeypatch, SpokeSettings)
    assert config(spoke)["GENOMHUB_SPOKE_HUB_ACCESS_URL"] == settings.hub_access_url
    url = urlsplit(settings.hub_access_url)
    assert url.scheme == "https", "a person's token never crosses to the hub in the clear"
    assert url.path in ("", "/") and not url.query  # the routes' paths are the client's
    HubAccess(settings.hub_access_url, settings.hub_ca_bundle)  # as services/spoke/app.py's build()
    (host,) = {rule["host"] for rule in ingress_of(prod, "access")["spec"]["rules"]}
    assert (url.hostname, url.port) == (host, None)
    # Checked against the system's CAs, unless the site names its own CA, mounted read-only.
    if settings.hub_ca_bundle is not None:
        mount_of(deployment, settings.hub_ca_bundle)


def test_probes_and_service_hit_the_spokes_real_endpoints(spoke: list[Obj]) -> None:
    port = SpokeSettings.model_fields["port"].default
    deployment = one(spoke, "Deployment", "spoke")
    container = only_container(deployment)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": port}
    # Building the service contacts no broker; it only needs to know one and its credentials.
    offline = KafkaSettings(bootstrap="127.0.0.1:9", username="unused", password=SecretStr("unused"))
    region = Region(config(spoke)["GENOMHUB_SPOKE_REGION"])
    service = Service(SPOKE, SpokeSettings(kafka=offline), principal=spoke_principal(region))
    routes = {r.resource.canonical for r in service.web.router.routes() if r.method == "GET" and r.resource}
    liveness, readiness = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
    assert (liveness["path"], readiness["path"]) == ("/healthz", "/readyz")
    for probe in (liveness, readiness):
        assert ports.get(probe["port"], probe["port"]) == port
        assert probe["path"] in routes
    (service_port,) = one(spoke, "Service", "spoke")["spec"]["ports"]
    assert service_port["port"] == port and ports[service_port["targetPort"]] == port


def test_the_spoke_runs_non_root_on_a_read_only_root(spoke: list[Obj]) -> None:
    deployment = one(spoke, "Deployment", "spoke")
    spec = pod_spec(deployment)
    container = only_container(deployment)
    security = {**spec["securityContext"], **container["securityContext"]}
    assert security["runAsNonRoot"] is True and security["runAsUser"] > 0
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert spec["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert {m["name"] for m in container["volumeMounts"]} <= set(volumes)
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]


# --- secrets --------------------------------------------------------------------------------


def test_no_secret_is_rendered_and_no_hub_secret_key_appears(site: tuple[Region, list[Obj]]) -> None:
    """Every secret is the operators' or Strimzi's, referred to by name; the spoke holds
    no secret key: no hub signing key, no archive key."""
    region, spoke = site
    assert not of_kind(spoke, "Secret")
    assert not any(o.get("data") or o.get("stringData") for o in spoke if o["kind"] == "Secret")
    text, decoded = rendered_texts(spoke)
    assert not decoded
    for forbidden in (
        "GENOMHUB_HUB_SECRET_KEY",
        "GENOMHUB_HUB_KEY_PASSPHRASE",
        "genomhub-hub-key",
        "hub.sec",
        "GENOMHUB_ARCHIVE",
        "genomhub-archive-key",
        "PRIVATE KEY",
    ):
        assert forbidden not in text, forbidden
    for source in (HUB_MIRROR_USER, OVERLAY / "kustomization.yaml"):
        assert "GENOMHUB_HUB_SECRET_KEY" not in source.read_text()
    # Nothing secret as a literal: passwords, tokens and the database URL by reference only.
    deployment = one(spoke, "Deployment", "spoke")
    container = only_container(deployment)
    literal = {e["name"] for e in container["env"] if "value" in e} | set(config(spoke))
    for name in literal:
        assert not re.search(r"PASSWORD|TOKENS|DATABASE_URL|PASSPHRASE", name), name
    # ... from the Secrets the README names, or Strimzi's own.
    referred = {ref["name"] for ref in secret_refs(container).values()}
    referred |= {v["secret"]["secretName"] for v in pod_spec(deployment)["volumes"] if "secret" in v}
    mirror = the_mirror(spoke)["spec"]
    for cluster in (mirror["target"], the_source(spoke)):
        referred.add(cluster["authentication"]["passwordSecret"]["secretName"])
        referred |= {c["secretName"] for c in cluster["tls"]["trustedCertificates"]}
    assert referred == strimzi_secrets(region) | {HUB_CREDENTIALS, SITE_SECRET}


def test_the_readme_says_what_a_spoke_site_creates_and_how_to_apply(spoke: list[Obj]) -> None:
    readme = (K8S / "README.md").read_text()
    assert "## A spoke site" in readme
    section = readme.split("## A spoke site", 1)[1].split("\n## ", 1)[0]
    assert f"create configmap {PUBLIC_KEY} --from-file=hub.pub=" in section
    assert f"create secret generic {HUB_CREDENTIALS}" in section
    assert f"create secret generic {SITE_SECRET}" in section
    assert "kubectl apply -k k8s/overlays/spoke" in section
    assert "k8s/overlays/spoke/hub/mirror-user.yaml" in section
    # The hub hands over the password of the region's own spoke user, no shared one's.
    assert f"get secret {kafka_user(spoke_principal(EXAMPLE))} " in section
    assert f"get secret {kafka_user(SPOKE)} " not in section
    # Every key the manifests take from the hand-made Secrets is one the README creates.
    container = only_container(one(spoke, "Deployment", "spoke"))
    keys = {(r["name"], r["key"]) for r in secret_refs(container).values()}
    keys.add((HUB_CREDENTIALS, the_source(spoke)["authentication"]["passwordSecret"]["password"]))
    keys.add((HUB_CREDENTIALS, "ca.crt"))
    for secret, key in keys:
        if secret in (HUB_CREDENTIALS, SITE_SECRET):
            assert f"--from-literal={key}=" in section or f"--from-file={key}=" in section, key


# --- NetworkPolicies ---------------------------------------------------------------------------


def test_ingress_is_denied_but_to_the_spokes_api_and_the_brokers(spoke: list[Obj]) -> None:
    policies = of_kind(spoke, "NetworkPolicy")
    assert one(spoke, "NetworkPolicy", "default-deny-ingress")["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress"],
    }
    unlisted = {"app.kubernetes.io/name": "something-new"}
    assert not admits(policies, unlisted, 8080, None)
    assert not admits(policies, unlisted, 8080, MIRROR_POD)
    deployment = one(spoke, "Deployment", "spoke")
    pod = deployment["spec"]["template"]["metadata"]["labels"]
    port = only_container(deployment)["ports"][0]["containerPort"]
    brokers = listener(spoke)["port"]
    for source in (pod, MIRROR_POD):  # the namespace's pods reach the API and the brokers
        assert admits(policies, pod, port, source)
        assert admits(policies, BROKER_POD, brokers, source)
    # From outside: the API only, and only from the ingress controller; never the brokers.
    assert admits(policies, pod, port, None)
    assert not admits(policies, BROKER_POD, brokers, None)
    for policy in policies:
        if not selects(policy["spec"]["podSelector"], pod):
            continue
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), f"{policy['metadata']['name']} admits anyone"
            for peer in rule["from"]:
                assert "ipBlock" not in peer
                if "namespaceSelector" in peer:
                    assert peer["namespaceSelector"] == {
                        "matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}
                    }
