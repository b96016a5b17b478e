"""KafkaUser custom resources made from the registry's grants (`shared.topics.grants_of`).

Each service, the operators and finance are a Strimzi ``KafkaUser`` with SCRAM-SHA-512
authentication and exactly the ACLs the local broker gives the same principal, so the two
cannot drift. The User Operator creates each user's password in a Secret named after the
user (key ``password``), which the user's Deployment reads. The admin has no KafkaUser:
in a cluster the Topic Operator creates the topics. The resources are checked in
(``k8s/base/kafka/users.yaml``) and a unit test fails when they drift. Regenerate with::

    .venv/bin/python -m tools.k8s.users > k8s/base/kafka/users.yaml
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from shared.topics import ADMIN, CLIENT_PRINCIPALS, Grant, grants_of, kafka_user
from tools.k8s.topics import CLUSTER, STRIMZI_API

HEADER = (
    "# Generated from shared/topics.py by `python -m tools.k8s.users`: do not edit.\n"
    "# tests/unit/k8s fails when this file drifts from the registry's grants.\n"
)
STRIMZI_PATTERNS = {"literal": "literal", "prefix": "prefix"}
CLUSTER_PRINCIPALS = tuple(p for p in CLIENT_PRINCIPALS if p != ADMIN)
"""The principals that have a KafkaUser (the admin's work is the Topic Operator's)."""


def acl(grant: Grant) -> dict[str, Any]:
    resource: dict[str, Any] = {"type": grant.resource}
    if grant.resource != "cluster":
        resource |= {"name": grant.name, "patternType": STRIMZI_PATTERNS[grant.pattern]}
    return {"resource": resource, "operations": list(grant.operations), "host": "*"}


def kafka_user_resource(principal: str, cluster: str = CLUSTER) -> dict[str, Any]:
    return {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaUser",
        "metadata": {"name": kafka_user(principal), "labels": {"strimzi.io/cluster": cluster}},
        "spec": {
            "authentication": {"type": "scram-sha-512"},
            "authorization": {"type": "simple", "acls": [acl(g) for g in grants_of(principal)]},
        },
    }


def render() -> str:
    """The checked-in file's exact text: a header, then one KafkaUser per principal."""
    users = [kafka_user_resource(p) for p in CLUSTER_PRINCIPALS]
    return HEADER + str(yaml.safe_dump_all(users, sort_keys=False, explicit_start=True))


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(prog="python -m tools.k8s.users", description=__doc__).parse_args(argv)
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
