"""KafkaTopic custom resources made from the topic registry (`shared.topics`).

The registry is the one list of topics; the Strimzi Topic Operator creates the topics in a
cluster from these resources. The resources are checked in (``k8s/base/kafka/topics.yaml``)
so that the kustomize tree is complete without running Python, and a unit test fails when
they drift from the registry. Regenerate with::

    .venv/bin/python -m tools.k8s.topics > k8s/base/kafka/topics.yaml

Replicas are left to the broker's ``default.replication.factor``, which each overlay sets
for its cluster size, so one generated file serves the single-node dev cluster and prod.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

import yaml

from shared.config import TopicSettings
from shared.topics import Topic, all_topics

CLUSTER = "genomhub"
"""Name of the Strimzi ``Kafka`` resource; the Topic Operator picks topics by this label."""

STRIMZI_API = "kafka.strimzi.io/v1"
"""Strimzi 1.x serves only the v1 API (v1beta2 was removed in 1.0)."""

HEADER = (
    "# Generated from shared/topics.py by `python -m tools.k8s.topics`: do not edit.\n"
    "# tests/unit/k8s fails when this file drifts from the registry.\n"
)


def default_partitions() -> int:
    """The partitions of a core topic the services themselves assume (the settings default)."""
    return int(TopicSettings.model_fields["partitions"].default)


def resource_name(topic: str) -> str:
    """A Kubernetes object name for ``topic``: lowercase, and only ``[a-z0-9.-]``."""
    name = re.sub(r"[^a-z0-9.-]", "-", topic.lower()).strip("-.")
    if not name or len(name) > 253:
        raise ValueError(f"topic {topic!r} gives no valid Kubernetes name")
    return name


def kafka_topic(topic: Topic, cluster: str = CLUSTER) -> dict[str, Any]:
    """The ``KafkaTopic`` resource of one registry topic, its config copied verbatim."""
    return {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaTopic",
        "metadata": {
            "name": resource_name(topic.name),
            "labels": {"strimzi.io/cluster": cluster},
        },
        "spec": {
            "topicName": topic.name,
            "partitions": topic.partitions,
            "config": dict(topic.config),
        },
    }


def kafka_topics(partitions: int) -> list[dict[str, Any]]:
    return [kafka_topic(topic) for topic in all_topics(partitions)]


def render(partitions: int) -> str:
    """The checked-in file's exact text: a header, then one document per topic."""
    documents = yaml.safe_dump_all(kafka_topics(partitions), sort_keys=False, explicit_start=True)
    return HEADER + str(documents)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.k8s.topics", description=__doc__)
    parser.add_argument("--partitions", type=int, default=default_partitions())
    args = parser.parse_args(argv)
    sys.stdout.write(render(args.partitions))


if __name__ == "__main__":
    main()
