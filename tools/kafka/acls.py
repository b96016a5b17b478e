"""The broker's ACLs made equal to the grants of the registry (:func:`shared.topics.grants_of`).

aiokafka 0.14 carries the CreateAcls, DescribeAcls and DeleteAcls requests in its protocol
module but its admin client has no methods for them, so the requests are built here from
those structs (the non-flexible versions, which Kafka 4 still serves) and sent with the
admin principal's client from :mod:`shared.kafka`.

A sync is idempotent: it creates the grants that are missing and deletes any ACL of a
genomhub user that the registry no longer grants, so a broker that restarts, or a registry
that changes, ends with exactly the registry's ACLs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka.errors import for_code
from aiokafka.protocol.admin import (
    CreateAclsRequest_v1,
    DeleteAclsRequest_v1,
    DescribeAclsRequest_v1,
)
from aiokafka.protocol.api import Request

from shared.kafka import KafkaAccess
from shared.topics import CLIENT_PRINCIPALS, Grant, grants_of, kafka_user

RESOURCE_TYPES = {"topic": 2, "group": 3, "cluster": 4, "transactionalId": 5}
PATTERN_TYPES = {"literal": 3, "prefix": 4}
OPERATIONS = {"Read": 3, "Write": 4, "Create": 5, "Describe": 8, "IdempotentWrite": 12}
ANY = 1
ALLOW = 3
CLUSTER_NAME = "kafka-cluster"


@dataclass(frozen=True, order=True)
class Acl:
    """One ACL binding as the broker stores it (all codes are Kafka's enum values)."""

    resource_type: int
    resource_name: str
    pattern_type: int
    principal: str
    host: str
    operation: int
    permission: int


def acls_of(principal: str, grants: Iterable[Grant]) -> set[Acl]:
    user = f"User:{kafka_user(principal)}"
    return {
        Acl(
            RESOURCE_TYPES[g.resource],
            CLUSTER_NAME if g.resource == "cluster" else g.name,
            PATTERN_TYPES[g.pattern],
            user,
            "*",
            OPERATIONS[op],
            ALLOW,
        )
        for g in grants
        for op in g.operations
    }


def wanted_acls() -> set[Acl]:
    return {acl for p in CLIENT_PRINCIPALS for acl in acls_of(p, grants_of(p))}


Binding = tuple[int, str, int, str, str, int, int]


def bindings(acls: Iterable[Acl]) -> list[Binding]:
    """``acls`` in the wire order of both CreateAcls' creations and DeleteAcls' filters (v1),
    sorted so a request is the same for the same set."""
    return [
        (a.resource_type, a.resource_name, a.pattern_type, a.principal, a.host, a.operation, a.permission)
        for a in sorted(acls)
    ]


class _Create(Request[CreateAclsRequest_v1]):  # type: ignore[misc]
    API_KEY = 30

    def __init__(self, acls: Iterable[Acl]) -> None:
        self.bindings = bindings(acls)

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(self.bindings)


class _DescribeAll(Request[DescribeAclsRequest_v1]):  # type: ignore[misc]
    API_KEY = 29

    def build(self, request_struct_class: type[DescribeAclsRequest_v1]) -> DescribeAclsRequest_v1:
        return request_struct_class(ANY, None, ANY, None, None, ANY, ANY)


class _Delete(Request[DeleteAclsRequest_v1]):  # type: ignore[misc]
    """Deletes exactly ``acls``: each binding is a filter that matches only itself."""

    API_KEY = 31

    def __init__(self, acls: Iterable[Acl]) -> None:
        self.bindings = bindings(acls)

    def build(self, request_struct_class: type[DeleteAclsRequest_v1]) -> DeleteAclsRequest_v1:
        return request_struct_class(self.bindings)


def _raise_for(code: int, message: str | None, what: str) -> None:
    if code:
        raise for_code(code)(f"{what}: {message or ''}")


async def broker_acls(admin: KafkaAccess) -> set[Acl]:
    """Every ACL on the broker (the admin principal is a super user)."""
    client = admin.client()
    await client.bootstrap()
    try:
        response = await client.send(client.get_random_node(), _DescribeAll())
    finally:
        await client.close()
    _raise_for(response.error_code, response.error_message, "describing ACLs")
    found = set()
    for resource_type, name, pattern, acls in response.resources:
        for principal, host, operation, permission in acls:
            found.add(Acl(resource_type, name, pattern, principal, host, operation, permission))
    return found


def genomhub_acls(acls: Iterable[Acl]) -> set[Acl]:
    return {a for a in acls if a.principal.startswith(f"User:{kafka_user('')}")}


async def sync_acls(admin: KafkaAccess, timeout: float = 30.0) -> tuple[set[Acl], set[Acl]]:
    """Make the broker's ACLs of genomhub users exactly the registry's; returns (created, deleted).

    Returns once the broker's authorizer applies them: a created ACL reaches it through the
    metadata log a moment after CreateAcls answers, and a client started in that moment
    would be refused.
    """
    wanted = wanted_acls()
    existing = await broker_acls(admin)
    ours = genomhub_acls(existing)
    missing, stale = wanted - existing, ours - wanted
    client = admin.client()
    await client.bootstrap()
    try:
        if missing:
            created = await client.send(client.get_random_node(), _Create(missing))
            for code, message in created.creation_responses:
                _raise_for(code, message, "creating ACLs")
        if stale:
            deleted = await client.send(client.get_random_node(), _Delete(stale))
            for code, message, _matching in deleted.filter_responses:
                _raise_for(code, message, "deleting ACLs")
    finally:
        await client.close()
    deadline = time.monotonic() + timeout
    while genomhub_acls(await broker_acls(admin)) != wanted:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the broker did not apply the ACLs within {timeout:.0f} s")
        await asyncio.sleep(0.2)
    return missing, stale
