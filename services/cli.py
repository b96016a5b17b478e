"""The ``genomhub`` command.

It gathers the commands of each service (a ``commands`` list in ``services/<name>/commands.py``)
beside the project-wide ones: the local broker, running a service, the event schemas.
"""

from __future__ import annotations

import importlib
import importlib.util
from importlib.metadata import EntryPoint, entry_points

import click

import services
from shared.config import SettingsError, database_urls, stateful_services
from shared.topics import SERVICES, SPOKE

# Each service's own commands, imported only when called: a short command (e.g. a region's
# `genomhub validate`) should not pay for importing every service.
SERVICE_COMMANDS = {
    "upload": "services.receiver.commands:upload",
    "validate": "services.validator.commands:validate_command",
    "catalogue": "services.indexer.commands:catalogue",
    "billing": "services.billing.commands:billing",
    "refunds": "services.billing.commands:refunds",
    "replay": "services.operations.commands:replay",
    "dlq": "services.operations.commands:dlq",
    "keys": "services.operations.keys:keys",
    "access": "services.access.commands:access",
    "audit": "services.access.commands:audit",
    "archive": "services.archive.commands:archive",
    "fetch": "services.access.commands:fetch",
}
LOCAL_STACK_COMMANDS = "genomhub.local_stack"
"""The entry-point group of the commands that run genomhub on this machine (``demo``, ``up``,
``kafka``): a checkout has them (``tools/stack/commands.py``, registered in pyproject.toml); a
pod's image ships no ``tools/`` and so has none of them."""


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is not installed
        return False


def _local_stack() -> dict[str, EntryPoint]:
    """The local stack's commands that this installation can run (their module is there)."""
    return {ep.name: ep for ep in entry_points(group=LOCAL_STACK_COMMANDS) if _importable(ep.module)}


class Genomhub(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *SERVICE_COMMANDS, *_local_stack()])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in SERVICE_COMMANDS:
            module, attribute = SERVICE_COMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command)
            return command
        local = _local_stack().get(cmd_name)
        if local is not None:
            command = local.load()
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> object:
        """A setting the environment lacks (or names by an old name) stops any command with
        the message that says which variable to set, not a traceback."""
        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=Genomhub, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """genomhub: the intake pipeline of the Danish National Genome Database."""


@main.command("run")
@click.argument("service", type=click.Choice([*SERVICES, SPOKE]))
def run(service: str) -> None:
    """Run one service (its consumer and its HTTP server) in the foreground."""
    module = importlib.import_module(f"services.{service}.app")
    module.build().run()


@main.group()
def db() -> None:
    """The services' relational schemas (receiver, indexer, billing, harmoniser, access)."""


@db.command("upgrade")
@click.option(
    "--service",
    "only",
    multiple=True,
    type=click.Choice(stateful_services()),
)
def db_upgrade(only: tuple[str, ...]) -> None:
    """Migrate each service's database to its newest schema (the Kubernetes migration Job)."""
    from pathlib import Path

    from shared.database import upgrade

    for service, url in database_urls().items():
        if only and service not in only:
            continue
        upgrade(url, Path(services.__file__).parent / service / "migrations", service)
        click.echo(f"{service}: schema at head")


@main.group()
def schemas() -> None:
    """The JSON Schemas of the events, checked in under shared/schemas/."""


@schemas.command("write")
def schemas_write() -> None:
    """Regenerate the schemas from the event models (and the spokes' feed record's)."""
    from shared.events import write_schemas
    from shared.feed import write_feed_schema

    for path in [*write_schemas(), write_feed_schema()]:
        click.echo(path)


@main.command("token")
@click.option("--for", "holder", required=True, help="A region (e.g. hovedstaden) or `ngc`.")
@click.option(
    "--role",
    "roles",
    multiple=True,
    help="A role of the token (repeatable): uploader, clinician, data-steward, finance, operator. "
    "None: the holder's old roles (a region's uploader; ngc's finance and operator).",
)
def token(holder: str, roles: tuple[str, ...]) -> None:
    """Make a bearer token; print it once, and the hash that goes into GENOMHUB_TOKENS."""
    import json

    from shared.auth import TokenEntry, Tokens, new_token, token_hash

    value = new_token()
    entry: TokenEntry = {"holder": holder, "roles": list(roles)} if roles else holder
    try:
        Tokens({token_hash(value): entry})
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--for/--role") from exc
    click.echo(f"token: {value}")
    click.echo(f"GENOMHUB_TOKENS entry: {json.dumps(token_hash(value))}: {json.dumps(entry)}")


if __name__ == "__main__":
    main()
