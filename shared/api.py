"""One way to declare a genomhub HTTP API: each route once, its router entry and its OpenAPI
3.1 operation both made from that one declaration.

A handler is a method of a service's :class:`Api` subclass, declared with :func:`route`:
method, path, operation id, summary, the pydantic models of its path and query parameters
(validated here, before the handler runs, into the one error body of ``shared.http``), the
model of its body and of each answer. :meth:`Api.document` is generated from the same
declarations :meth:`Api.install` adds to the router, so a route cannot be served without
being documented, and the document cannot name a parameter or status the route does not have.

What the models cannot say is said where it is checked: a request body with rules of its own
(the receiver's metadata, with its CPR guard) is documented from its model and validated by
the handler that knows those rules.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar, cast

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from shared.auth import Role, Tokens, bearer_auth, require_role
from shared.http import ERROR_MEDIA_TYPE, PROBES, ErrorBody, FieldProblem, Ga4gh, http_error

M = TypeVar("M", bound=BaseModel)
H = TypeVar("H", bound=Callable[..., Awaitable[web.StreamResponse]])
REF = "#/components/schemas/{model}"
OPENAPI_PATH = "/openapi.json"
Schema = type[BaseModel] | Mapping[str, Any]
"""A body's schema: a pydantic model (generated, and shared in ``components``), or written out
where the body is not JSON (bytes, CSV) or not a model."""
_PARAMETERS = web.RequestKey("api_parameters", dict)


class InvalidParameters(ValueError):
    """Parameters their model refuses: each problem names the parameter and what is wrong."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


def parse_parameters(model: type[M], values: Mapping[str, str], repeated: Iterable[str] = ()) -> M:
    """``values`` as ``model``, or :class:`InvalidParameters` listing every problem.

    A parameter given twice is refused rather than one of its values picked: the caller meant
    something the API would not do. An unknown one is refused when the model forbids extras
    (every query model does: a misspelt filter would otherwise answer the unfiltered list).
    The messages are pydantic's or the validators' own, which never quote the value.
    """
    problems = [FieldProblem(field=name, message="given more than once") for name in sorted(set(repeated))]
    try:
        parsed = model.model_validate(dict(values))
    except ValidationError as exc:
        for error in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(p) for p in error["loc"]) or "query"
            if error["type"] == "extra_forbidden":
                message = "unknown parameter"
            elif error["type"] == "value_error":
                message = str(error.get("ctx", {}).get("error", error["msg"]))
            else:
                message = error["msg"]
            problems.append(FieldProblem(field=where, message=message))
        raise InvalidParameters(problems) from None
    if problems:
        raise InvalidParameters(problems)
    return parsed


@dataclass(frozen=True)
class Answer:
    """One documented answer of a route: its description and its body by media type."""

    description: str
    content: Mapping[str, Schema] = field(default_factory=dict)


def answer(description: str, body: Schema | None = None) -> Answer:
    """A JSON answer (or one without a body)."""
    return Answer(description, {"application/json": body} if body is not None else {})


def refusal(description: str) -> Answer:
    """An error answer: always the one error body."""
    return Answer(description, {ERROR_MEDIA_TYPE: ErrorBody})


@dataclass(frozen=True)
class Route:
    """The declaration of one route; see :func:`route`."""

    method: str
    path: str
    operation_id: str
    summary: str
    responses: Mapping[int, Answer]
    path_parameters: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    headers: type[BaseModel] | None = None
    body: Mapping[str, Schema] | None = None
    public: bool = False
    name: str | None = None
    query_refused: int = 422
    path_refused: int = 404
    roles: tuple[Role, ...] = ()
    ga4gh: Ga4gh | None = None

    def parameters(self) -> list[dict[str, Any]]:
        """The OpenAPI parameter objects, from the parameter models."""
        return [
            *_parameters(self.path_parameters, "path"),
            *_parameters(self.query, "query"),
            *_parameters(self.headers, "header"),
        ]


def route(
    method: str,
    path: str,
    *,
    operation_id: str,
    summary: str,
    responses: Mapping[int, Answer],
    path_parameters: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    headers: type[BaseModel] | None = None,
    body: Mapping[str, Schema] | None = None,
    public: bool = False,
    name: str | None = None,
    query_refused: int = 422,
    path_refused: int = 404,
    roles: tuple[Role, ...] = (),
    ga4gh: Ga4gh | None = None,
) -> Callable[[H], H]:
    """Declare the decorated :class:`Api` method the handler of ``method path``.

    ``query`` and ``path_parameters`` are validated before the handler runs: a refused query
    is answered ``query_refused`` ("invalid query"), a path naming what cannot exist
    ``path_refused`` ("no such <parameter>", or "invalid <parameter>" when it is a 400), each
    problem naming its parameter; the handler reads them with :func:`query_of` and
    :func:`path_of`. ``headers`` and ``body`` are documented; the handler checks them. The
    401 of the token check is added to every route that is not ``public``. ``roles``, when
    given, are the roles of which the caller's token must have one (403 otherwise, before any
    parameter is looked at); the document names them (``x-genomhub-roles``) with the 403.
    ``ga4gh`` routes (DRS, htsget) answer their errors in the one error body with that API's
    own fields added (DRS's ``msg`` and ``status_code``, htsget's ``htsget`` object), the
    role and parameter refusals included.
    """
    declared = Route(
        method.upper(),
        path,
        operation_id,
        summary,
        responses,
        path_parameters,
        query,
        headers,
        body,
        public,
        name,
        query_refused,
        path_refused,
        roles,
        ga4gh,
    )

    def mark(handler: H) -> H:
        handler.__dict__["__route__"] = declared
        return handler

    return mark


def query_of(request: web.Request, model: type[M]) -> M:
    """The request's query parameters, validated as its route declared."""
    return _parsed(request, "query", model)


def path_of(request: web.Request, model: type[M]) -> M:
    """The request's path parameters, validated as its route declared."""
    return _parsed(request, "path", model)


def _parsed(request: web.Request, where: str, model: type[M]) -> M:
    value = request.get(_PARAMETERS, {}).get(where)
    if not isinstance(value, model):
        raise TypeError(f"the route declares no {where} parameters of {model.__name__}")
    return value


class Api:
    """A service's API: the routes its subclass declares, served and documented as one.

    A subclass names its document (``title``, ``description``) and declares its handlers with
    :func:`route`; ``version`` is the API's, not the package's.
    """

    title: ClassVar[str]
    description: ClassVar[str]
    version: ClassVar[str] = "1.0.0"

    @classmethod
    def routes(cls) -> list[tuple[str, Route]]:
        """Each declared handler's attribute name and its route, in declaration order."""
        found: dict[str, Route] = {}
        for klass in reversed(cls.__mro__):
            for attribute, value in vars(klass).items():
                declared = getattr(value, "__dict__", {}).get("__route__")
                if isinstance(declared, Route):
                    found[attribute] = declared
        return list(found.items())

    @classmethod
    def public_paths(cls) -> tuple[str, ...]:
        return (*PROBES, OPENAPI_PATH, *(f"{r.method} {r.path}" for _, r in cls.routes() if r.public))

    @classmethod
    def document(cls) -> dict[str, Any]:
        """The OpenAPI 3.1 document of the declared routes; served at :data:`OPENAPI_PATH`."""
        models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
            (ErrorBody, "serialization")
        ]
        for _, declared in cls.routes():
            for schema in (declared.body or {}).values():
                if isinstance(schema, type):
                    models.append((schema, "validation"))
            for reply in declared.responses.values():
                models += [(s, "serialization") for s in reply.content.values() if isinstance(s, type)]
        unique = list(dict.fromkeys(models))
        _, defs = models_json_schema(unique, ref_template=REF)
        paths: dict[str, dict[str, Any]] = {}
        for _, declared in cls.routes():
            operation: dict[str, Any] = {"operationId": declared.operation_id, "summary": declared.summary}
            if declared.public:
                operation["security"] = []
            if declared.roles:
                operation["x-genomhub-roles"] = [r.value for r in declared.roles]
                operation["description"] = "Roles: " + ", ".join(r.value for r in declared.roles) + "."
            parameters = declared.parameters()
            if parameters:
                operation["parameters"] = parameters
            if declared.body is not None:
                operation["requestBody"] = {"required": True, "content": _content(declared.body)}
            replies = dict(declared.responses)
            if not declared.public:
                replies.setdefault(401, refusal("Missing or invalid bearer token."))
            if declared.roles:
                replies.setdefault(403, refusal("The token has none of the route's roles."))
            operation["responses"] = {
                str(status): _answer(reply) for status, reply in sorted(replies.items())
            }
            paths.setdefault(declared.path, {})[declared.method.lower()] = operation
        return {
            "openapi": "3.1.0",
            "info": {"title": cls.title, "version": cls.version, "description": cls.description},
            "security": [{"bearer": []}],
            "paths": paths,
            "components": {
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                "schemas": defs.get("$defs", {}),
            },
        }

    def install(self, app: web.Application, tokens: Tokens) -> None:
        """Add the bearer-token check (all but the public paths), every declared route, and
        the document to ``app``.

        Middlewares that must see a 401 (a request counter) are appended before this call.
        The errors of a ``ga4gh`` route, its 401 included, are put in that API's shape outside
        the token check.
        """
        kinds: dict[Any, Ga4gh] = {}
        app.middlewares.append(cast(Middleware, _ga4gh_errors(kinds)))
        app.middlewares.append(cast(Middleware, bearer_auth(tokens, self.public_paths())))
        for attribute, declared in self.routes():
            handler = _validating(declared, getattr(self, attribute))
            app.router.add_route(declared.method, declared.path, handler, name=declared.name)
            if declared.ga4gh is not None:
                kinds[handler] = declared.ga4gh
        spec = self.document()

        async def openapi(_: web.Request) -> web.Response:
            return web.json_response(spec)

        app.router.add_get(OPENAPI_PATH, openapi)


def _ga4gh_errors(kinds: Mapping[Any, Ga4gh]) -> Callable[..., Awaitable[web.StreamResponse]]:
    """A middleware answering the errors of the routes in ``kinds`` in the one error body with
    their GA4GH API's fields added (see :func:`shared.http.error_body`)."""

    @web.middleware
    async def shaped(request: web.Request, handler: Any) -> web.StreamResponse:
        kind = kinds.get(request.match_info.handler)
        if kind is None:
            return cast(web.StreamResponse, await handler(request))
        try:
            return cast(web.StreamResponse, await handler(request))
        except web.HTTPException as exc:
            if exc.status < 400 or not isinstance(exc.text, str):
                raise
            said = ErrorBody.model_validate_json(exc.text)
            kept = {k: v for k, v in exc.headers.items() if not k.lower().startswith("content-")}
            raise http_error(
                exc.status,
                said.error,
                problems=list(said.problems),
                detail=said.detail,
                headers=kept,
                ga4gh=kind,
            ) from None

    return shaped


def _validating(
    declared: Route, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``handler`` behind the validation of its route's query, then path, parameters."""

    @functools.wraps(handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        if declared.roles:
            require_role(request, declared.roles)
        parsed: dict[str, BaseModel] = {}
        if declared.query is not None:
            repeated = {key for key in request.query if len(request.query.getall(key)) > 1}
            values = {key: request.query[key] for key in request.query}
            try:
                parsed["query"] = parse_parameters(declared.query, values, repeated)
            except InvalidParameters as exc:
                raise http_error(declared.query_refused, "invalid query", problems=exc.problems) from None
        if declared.path_parameters is not None:
            try:
                parsed["path"] = parse_parameters(declared.path_parameters, dict(request.match_info))
            except InvalidParameters as exc:
                named = exc.problems[0].field.replace("_", " ")
                title = f"invalid {named}" if declared.path_refused == 400 else f"no such {named}"
                raise http_error(declared.path_refused, title, problems=exc.problems) from None
        request[_PARAMETERS] = parsed
        return await handler(request)

    return checked


def _content(content: Mapping[str, Schema]) -> dict[str, Any]:
    return {
        media: {
            "schema": {"$ref": REF.format(model=schema.__name__)}
            if isinstance(schema, type)
            else dict(schema)
        }
        for media, schema in content.items()
    }


def _answer(reply: Answer) -> dict[str, Any]:
    out: dict[str, Any] = {"description": reply.description}
    if reply.content:
        out["content"] = _content(reply.content)
    return out


def _parameters(model: type[BaseModel] | None, where: str) -> Sequence[dict[str, Any]]:
    """One OpenAPI parameter a field of ``model``: its schema inlined, an optional one's
    ``null`` dropped (an absent parameter is how a query says "none")."""
    if model is None:
        return []
    schema = model.model_json_schema(mode="validation", ref_template=REF)
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema.get("properties", {}).items():
        described = _inline(dict(prop), defs)
        description = described.pop("description", None)
        if described.get("default", 0) is None:
            del described["default"]
        parameter: dict[str, Any] = {
            "name": name,
            "in": where,
            "required": where == "path" or name in required,
            "schema": described,
        }
        if description:
            parameter["description"] = description
        out.append(parameter)
    return out


def _inline(prop: dict[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    prop.pop("title", None)
    options = prop.get("anyOf")
    if isinstance(options, list):
        kept = [o for o in options if o != {"type": "null"}]
        if len(kept) == 1:
            del prop["anyOf"]
            prop = {**kept[0], **prop}
    ref = prop.pop("$ref", None)
    if isinstance(ref, str):
        target = {k: v for k, v in defs[ref.rsplit("/", 1)[1]].items() if k not in ("title", "description")}
        prop = {**target, **prop}
    return prop
