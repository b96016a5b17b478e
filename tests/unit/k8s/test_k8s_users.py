"""Kafka in Kubernetes: a TLS listener with SCRAM-SHA-512, simple authorization, and one
KafkaUser per principal whose ACLs are the local broker's, generated from one registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import KafkaSettings
from shared.kafka import kafka_access
from shared.topics import ADMIN, CLIENT_PRINCIPALS, SERVICES, grants_of, kafka_user
from tests.unit.k8s.k8s_objects import K8S, Obj, of_kind, one
from tests.unit.k8s.test_k8s_manifests import config, environment, pod_spec, settings_of
from tools.k8s.topics import CLUSTER
from tools.k8s.users import CLUSTER_PRINCIPALS, render
from tools.kafka.acls import OPERATIONS, PATTERN_TYPES, RESOURCE_TYPES, Acl, acls_of

USERS_FILE = K8S / "base" / "kafka" / "users.yaml"


def strimzi_acls(user: Obj) -> set[Acl]:
    """A KafkaUser's ACLs as the broker stores them, to compare with the local broker's."""
    principal = f"User:{user['metadata']['name']}"
    found = set()
    for entry in user["spec"]["authorization"]["acls"]:
        resource = entry["resource"]
        name = resource.get("name", "kafka-cluster")
        pattern = PATTERN_TYPES[resource.get("patternType", "literal")]
        for operation in entry["operations"]:
            found.add(
                Acl(
                    RESOURCE_TYPES[resource["type"]],
                    name,
                    pattern,
                    principal,
                    entry["host"],
                    OPERATIONS[operation],
                    3,
                )
            )
    return found


def test_checked_in_users_match_the_registry() -> None:
    assert USERS_FILE.read_text() == render(), (
        "k8s/base/kafka/users.yaml drifted from shared/topics.py: regenerate it with "
        "`.venv/bin/python -m tools.k8s.users > k8s/base/kafka/users.yaml`"
    )


def test_every_principal_but_the_admin_is_a_kafka_user_with_the_local_brokers_acls(
    overlay: tuple[str, list[Obj]],
) -> None:
    _, objects = overlay
    users = of_kind(objects, "KafkaUser")
    assert {u["metadata"]["name"] for u in users} == {kafka_user(p) for p in CLIENT_PRINCIPALS if p != ADMIN}
    assert set(CLUSTER_PRINCIPALS) == set(CLIENT_PRINCIPALS) - {ADMIN}
    for principal in CLUSTER_PRINCIPALS:
        user = one(objects, "KafkaUser", kafka_user(principal))
        assert user["apiVersion"] == "kafka.strimzi.io/v1"
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == CLUSTER
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert user["spec"]["authorization"]["type"] == "simple"
        assert strimzi_acls(user) == acls_of(principal, grants_of(principal))


def test_a_grant_change_shows_as_drift(monkeypatch: pytest.MonkeyPatch) -> None:
    import tools.k8s.users as users

    monkeypatch.setattr(users, "grants_of", lambda p: grants_of(p)[1:])
    assert users.render() != USERS_FILE.read_text()


def test_the_listener_is_tls_with_scram_and_every_request_is_authorised(
    overlay: tuple[str, list[Obj]],
) -> None:
    _, objects = overlay
    kafka = one(objects, "Kafka", CLUSTER)["spec"]
    (listener,) = kafka["kafka"]["listeners"]
    assert listener["tls"] is True
    assert listener["authentication"] == {"type": "scram-sha-512"}
    assert kafka["kafka"]["authorization"] == {"type": "simple"}
    assert "userOperator" in kafka["entityOperator"]
    (policy,) = [
        p for p in of_kind(objects, "NetworkPolicy") if p["metadata"]["name"] == "kafka-from-namespace"
    ]
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == [listener["port"]]


def test_each_service_reaches_kafka_as_its_own_user_over_verified_tls(
    overlay: tuple[str, list[Obj]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, objects = overlay
    ca_file = Path(config(objects)["GENOMHUB_KAFKA_CA_FILE"])
    for service in SERVICES:
        deployment = one(objects, "Deployment", service)
        spec = pod_spec(deployment)
        (container,) = spec["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["GENOMHUB_KAFKA_USERNAME"]["value"] == kafka_user(service)
        one(objects, "KafkaUser", kafka_user(service))
        # the password Strimzi's User Operator writes into the user's own Secret
        assert env["GENOMHUB_KAFKA_PASSWORD"]["valueFrom"] == {
            "secretKeyRef": {"name": kafka_user(service), "key": "password"}
        }
        # the cluster CA, mounted read-only where GENOMHUB_KAFKA_CA_FILE points
        (mount,) = [m for m in container["volumeMounts"] if ca_file.is_relative_to(m["mountPath"])]
        assert mount.get("readOnly") is True
        (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        assert volume["secret"]["secretName"] == f"{CLUSTER}-cluster-ca-cert"
        assert {i["path"]: i["key"] for i in volume["secret"]["items"]} == {
            str(ca_file.relative_to(mount["mountPath"])): "ca.crt"
        }
        settings = settings_of(
            {**environment(objects, deployment), "GENOMHUB_KAFKA_PASSWORD": "from-the-secret"},
            monkeypatch,
            KafkaSettings,
        )
        access = kafka_access(service, settings)
        assert access.security_protocol == "SASL_SSL"
        assert access.credentials is not None and access.credentials.username == kafka_user(service)
        assert access.ca_file == ca_file
