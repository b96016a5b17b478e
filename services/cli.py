"""The ``genomhub`` command.

It gathers the commands of each service (a ``commands`` list in ``services/<name>/commands.py``)
beside the project-wide ones: the local broker, running a service, the event schemas.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from tools.kafka.broker import LocalBroker

import services
from shared.config import get_settings
from shared.topics import SERVICES

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
    "demo": "services.demo:demo",
}


class Genomhub(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *SERVICE_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in SERVICE_COMMANDS:
            module, attribute = SERVICE_COMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=Genomhub, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """genomhub: the intake pipeline of the Danish National Genome Database."""


@main.group()
def kafka() -> None:
    """The local single-node Kafka broker (KRaft) under GENOMHUB_HOME."""


def _broker() -> LocalBroker:
    from tools.kafka.broker import LocalBroker

    settings = get_settings()
    return LocalBroker(settings.state_dir, settings.cache, settings.topic_partitions)


@kafka.command("start")
@click.option("--port", type=int, default=None, help="Client port (default: the last one, or a free one).")
def kafka_start(port: int | None) -> None:
    """Start the broker unless it runs; return once it answers metadata requests."""
    from tools.kafka.broker import BrokerError

    try:
        state, took = _broker().start(port)
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"kafka running pid={state.pid} bootstrap={state.bootstrap} ready in {took:.1f} s")


@kafka.command("provision")
def kafka_provision() -> None:
    """As the admin, create the registered topics and set exactly the registry's ACLs on
    the configured broker (the local broker does this at every start)."""
    import asyncio

    from aiokafka.errors import KafkaError

    from shared.kafka import KafkaAccessError, kafka_access
    from shared.topics import ADMIN
    from tools.kafka.broker import provision

    settings = get_settings()
    try:
        done = asyncio.run(
            provision(kafka_access(ADMIN, settings), settings.topic_partitions, settings.topic_replicas)
        )
    except KafkaAccessError as exc:
        raise click.ClickException(str(exc)) from exc
    except KafkaError as exc:
        raise click.ClickException(f"Kafka: {type(exc).__name__}: {exc}") from exc
    click.echo(
        f"topics created: {', '.join(done.topics) or 'none'}; "
        f"ACLs created: {done.acls_created}, deleted: {done.acls_deleted}"
    )


@kafka.command("stop")
def kafka_stop() -> None:
    """Stop the broker."""
    click.echo("kafka stopped" if _broker().stop() else "kafka was not running")


@kafka.command("status")
def kafka_status() -> None:
    """Say whether the broker runs, and where."""
    import asyncio

    from tools.kafka.broker import answers_metadata

    broker = _broker()
    state = broker.running()
    if state is None:
        click.echo("kafka not running")
        sys.exit(1)
    answering = asyncio.run(answers_metadata(broker.access(state=state)))
    click.echo(f"kafka {'running' if answering else 'starting'} pid={state.pid} bootstrap={state.bootstrap}")


@main.command("run")
@click.argument("service", type=click.Choice(SERVICES))
def run(service: str) -> None:
    """Run one service (its consumer and its HTTP server) in the foreground."""
    module = importlib.import_module(f"services.{service}.app")
    module.build().run()


@main.command("up")
@click.option("--no-jaeger", is_flag=True, help="Do not start Jaeger even when it is built.")
def up(no_jaeger: bool) -> None:
    """Start the whole local stack and show its status; Ctrl-C stops everything."""
    import signal

    from tools.stack.supervisor import LocalStack

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    with LocalStack(get_settings(), jaeger=not no_jaeger, say=click.echo) as stack:
        try:
            stack.wait_ready()
            stack.watch()
        except KeyboardInterrupt:
            click.echo("stopping the stack")


@main.group()
def db() -> None:
    """The services' relational schemas (receiver, indexer, billing)."""


@db.command("upgrade")
@click.option("--service", "only", multiple=True, type=click.Choice(["receiver", "indexer", "billing"]))
def db_upgrade(only: tuple[str, ...]) -> None:
    """Migrate each service's database to its newest schema (the Kubernetes migration Job)."""
    from pathlib import Path

    from shared.database import upgrade

    for service, url in get_settings().database_urls().items():
        if only and service not in only:
            continue
        upgrade(url, Path(services.__file__).parent / service / "migrations", service)
        click.echo(f"{service}: schema at head")


@main.group()
def schemas() -> None:
    """The JSON Schemas of the events, checked in under shared/schemas/."""


@schemas.command("write")
def schemas_write() -> None:
    """Regenerate the schemas from the event models."""
    from shared.events import write_schemas

    for path in write_schemas():
        click.echo(path)


@main.command("token")
@click.option("--for", "holder", required=True, help="A region (e.g. hovedstaden) or `ngc`.")
def token(holder: str) -> None:
    """Make a bearer token; print it once, and the hash that goes into GENOMHUB_TOKENS."""
    from shared.auth import Tokens, new_token, token_hash

    value = new_token()
    try:
        Tokens({token_hash(value): holder})
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--for") from exc
    click.echo(f"token: {value}")
    click.echo(f'GENOMHUB_TOKENS entry: "{token_hash(value)}": "{holder}"')


if __name__ == "__main__":
    main()
