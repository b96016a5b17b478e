"""``genomhub demo``: the pipeline on the embedded defaults, end to end, on this machine.

For now it shows the foundation: the local broker starts, one event goes out through the
shared envelope and comes back decoded, with its trace id. Each stage adds itself here.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import click
from aiokafka import AIOKafkaConsumer

from shared import telemetry
from shared.bus import ensure_topics, partitions_of, publish
from shared.config import get_settings
from shared.envelope import decode, normalise_headers
from shared.events import FileReceived
from shared.topics import topic_name


def _example(submission_id: str) -> FileReceived:
    return FileReceived.model_validate(
        {
            "submission": {
                "submission_id": submission_id,
                "region": "hovedstaden",
                "department": "Rigshospitalet",
                "sample_id": "DEMO-S1",
                "patient_id": "DEMO-P1",
                "analysis_type": "WGS",
                "platform": "ILLUMINA",
                "received_at": datetime.now(UTC),
            },
            "files": [
                {
                    "name": "DEMO-S1_R1.fastq.gz",
                    "role": "raw_reads",
                    "url": "file:///demo/DEMO-S1_R1.fastq.gz",
                    "size": 0,
                    "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                    "md5": "d41d8cd98f00b204e9800998ecf8427e",
                }
            ],
        }
    )


async def _round_trip() -> None:
    settings = get_settings()
    await ensure_topics(settings)
    event_id = str(uuid.uuid4())
    event = _example(event_id[:8])
    topic = topic_name(FileReceived)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers(), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await partitions_of(settings.bootstrap_servers(), topic)
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)
        with telemetry.tracer("genomhub.demo").start_as_current_span("demo upload"):
            trace_id = telemetry.current_trace_id()
            await publish([(event, event_id)], "/genomhub/demo", settings)
        click.echo(f"published {event.ce_type()} id={event_id} trace_id={trace_id}")
        while True:
            record = await consumer.getone()
            envelope = decode(normalise_headers(record.headers), record.value, FileReceived)
            if envelope.id != event_id:
                continue
            upstream = dict(normalise_headers(record.headers)).get("traceparent", b"").decode()
            click.echo(
                f"consumed {envelope.type} id={envelope.id} subject={envelope.subject} "
                f"sample={envelope.data.submission.sample_id} traceparent={upstream}"
            )
            return
    finally:
        await consumer.stop()


@click.command("demo")
def demo() -> None:
    """Start the local broker and send one event round the shared envelope."""
    from tools.kafka.broker import LocalBroker

    settings = get_settings()
    telemetry.setup("demo", "WARNING")
    state, took = LocalBroker(settings.state_dir, settings.cache).start()
    click.echo(f"kafka ready at {state.bootstrap} in {took:.1f} s")
    get_settings.cache_clear()
    asyncio.run(_round_trip())


commands = [demo]
