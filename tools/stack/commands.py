"""The commands that run genomhub on this machine: the local broker (``genomhub kafka``), the
whole stack (``genomhub up``) and the demo (``genomhub demo``, in :mod:`tools.stack.demo`).

They are the local stack's, not a pod's: pyproject.toml registers them in the
``genomhub.local_stack`` entry-point group, which ``genomhub`` (``services/cli.py``) loads
where ``tools/`` is installed, as in a checkout; the image ships only ``shared`` and
``services``, so production code never imports this.
"""

from __future__ import annotations

import sys

import click

from shared.config import KafkaSettings, TopicSettings
from shared.events import Region
from tools.kafka.broker import LocalBroker
from tools.stack.environment import StackSettings


@click.group()
def kafka() -> None:
    """The local single-node Kafka broker (KRaft) under GENOMHUB_HOME."""


def _broker() -> LocalBroker:
    settings = StackSettings.from_environment()
    return LocalBroker(settings.state_dir, settings.cache, settings.topics.partitions)


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
    click.echo(f"export GENOMHUB_KAFKA_BOOTSTRAP={state.bootstrap}  # for the commands that use it")


@kafka.command("provision")
def kafka_provision() -> None:
    """As the admin, create the registered topics and set exactly the registry's ACLs on
    the configured broker (the local broker does this at every start)."""
    import asyncio

    from aiokafka.errors import KafkaError

    from shared.kafka import KafkaAccessError, kafka_access
    from shared.topics import ADMIN
    from tools.kafka.broker import provision

    topics = TopicSettings()
    try:
        done = asyncio.run(
            provision(kafka_access(ADMIN, KafkaSettings()), topics.partitions, topics.replicas)
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


@click.command("up")
@click.option("--no-jaeger", is_flag=True, help="Do not start Jaeger even when it is built.")
@click.option(
    "--replicas",
    type=click.IntRange(min=1),
    default=None,
    help="Processes of each service, behind one address each (default: GENOMHUB_REPLICAS, 1).",
)
@click.option(
    "--spoke",
    "spokes",
    multiple=True,
    type=click.Choice([r.value for r in Region]),
    help="Also a region's spoke: its own broker, MirrorMaker 2 from the hub, the spoke service (repeatable).",
)
def up(no_jaeger: bool, replicas: int | None, spokes: tuple[str, ...]) -> None:
    """Start the whole local stack and show its status; Ctrl-C stops everything."""
    import signal

    from tools.stack.supervisor import LocalStack

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    with LocalStack(
        StackSettings.from_environment(),
        jaeger=not no_jaeger,
        say=click.echo,
        replicas=replicas,
        spokes=[Region(s) for s in spokes],
    ) as stack:
        try:
            stack.wait_ready()
            stack.watch()
        except KeyboardInterrupt:
            click.echo("stopping the stack")
