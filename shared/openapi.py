"""Pieces of the OpenAPI documents every genomhub API serves (receiver, catalogue, billing).

Each service writes its document in code, next to the models and enums its handlers check,
so the document cannot drift from what the API accepts; what is the same in every document
is written once here.
"""

from __future__ import annotations

from typing import Any


def parameter(name: str, schema: dict[str, Any], description: str, where: str = "query") -> dict[str, Any]:
    """An OpenAPI parameter object; a path parameter is always required, a query one never."""
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "description": description,
    }
