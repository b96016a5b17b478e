"""The checked-in KafkaTopic resources are exactly what the topic registry generates."""

from __future__ import annotations

import yaml

from shared.topics import DLQ_RETENTION_MS, all_topics
from tests.unit.k8s.k8s_objects import K8S, Obj, of_kind
from tools.k8s.topics import CLUSTER, default_partitions, render

TOPICS_FILE = K8S / "base" / "kafka" / "topics.yaml"


def test_checked_in_topics_match_the_registry() -> None:
    assert TOPICS_FILE.read_text() == render(default_partitions()), (
        "k8s/base/kafka/topics.yaml drifted from shared/topics.py: regenerate it with "
        "`.venv/bin/python -m tools.k8s.topics > k8s/base/kafka/topics.yaml`"
    )


def test_core_topics_keep_forever_and_dead_letters_ninety_days() -> None:
    docs = list(yaml.safe_load_all(TOPICS_FILE.read_text()))
    by_name = {d["spec"]["topicName"]: d for d in docs}
    registry = all_topics(default_partitions())
    assert set(by_name) == {t.name for t in registry}
    for topic in registry:
        spec = by_name[topic.name]["spec"]
        assert spec["partitions"] == topic.partitions
        if topic.name.endswith(".dlq"):
            assert spec["config"]["retention.ms"] == str(DLQ_RETENTION_MS) == str(90 * 24 * 3600 * 1000)
            assert spec["partitions"] == 1
        else:
            assert spec["config"]["retention.ms"] == "-1"
            assert spec["partitions"] == default_partitions()
        assert by_name[topic.name]["metadata"]["labels"]["strimzi.io/cluster"] == CLUSTER


def test_a_registry_change_shows_as_drift() -> None:
    assert render(default_partitions() + 1) != TOPICS_FILE.read_text()


def test_every_overlay_carries_every_topic_for_its_cluster(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    kafka = of_kind(objects, "Kafka")
    assert [k["metadata"]["name"] for k in kafka] == [CLUSTER]
    topics = of_kind(objects, "KafkaTopic")
    assert {t["spec"]["topicName"] for t in topics} == {t.name for t in all_topics(default_partitions())}
    namespace = kafka[0]["metadata"]["namespace"]
    for topic in topics:
        assert topic["apiVersion"] == "kafka.strimzi.io/v1"
        assert topic["metadata"]["namespace"] == namespace
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == CLUSTER
