"""Driving a local stack through faults: uploads from the five regions while services are
SIGKILLed at random moments and the broker restarts. The fault test and the soak benchmark
share it.
"""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

from shared.events import Region
from shared.topics import SERVICES
from tools.stack.demo import DemoTokens, report_sample, simulate_sample
from tools.stack.environment import StackSettings
from tools.stack.supervisor import LocalStack


def reads_for(settings: StackSettings, work: Path, count: int) -> list[tuple[Region, str, list[Path]]]:
    regions = list(Region)
    plan = []
    for i in range(count):
        region = regions[i % len(regions)]
        sample = f"FAULT-{region.value[:3].upper()}-{i:03d}"
        plan.append(
            (region, sample, simulate_sample(settings.reference(), work, sample, seed=100 + i, coverage=0.3))
        )
    return plan


def upload_all(
    receiver: str, tokens: DemoTokens, plan: list[tuple[Region, str, list[Path]]], out: list[str]
) -> None:
    async def one(region: Region, sample: str, reads: list[Path], gate: asyncio.Semaphore) -> None:
        async with gate:
            out.append(
                await report_sample(
                    receiver, tokens.by_holder[region.value], region, sample, f"P-{sample}", reads
                )
            )

    async def every() -> None:
        gate = asyncio.Semaphore(3)
        await asyncio.gather(*(one(r, s, reads, gate) for r, s, reads in plan))

    asyncio.run(every())


def run_with_faults(
    stack: LocalStack, plan: list[tuple[Region, str, list[Path]]], tokens: DemoTokens, seed: int
) -> tuple[list[str], Counter[str]]:
    """Upload ``plan`` while killing each service at least once and restarting the broker."""
    assert stack.supervisor is not None
    rng = random.Random(seed)
    receiver = f"http://127.0.0.1:{stack.port_of('receiver')}"
    sent: list[str] = []
    uploader = threading.Thread(target=upload_all, args=(receiver, tokens, plan, sent))
    uploader.start()
    faults = (
        [("kill", s) for s in SERVICES]
        + [("kill", rng.choice(SERVICES)) for _ in range(2)]
        + [("broker", "")]
    )
    rng.shuffle(faults)
    done: Counter[str] = Counter()
    for kind, service in faults:
        pause = time.monotonic() + rng.uniform(2.0, 6.0)
        while time.monotonic() < pause:
            stack.supervisor.poll()
            time.sleep(0.2)
        if kind == "kill":
            processes = stack.processes_of(service)  # one of its replicas (one draw only then)
            process = processes[0] if len(processes) == 1 else rng.choice(processes)
            print(f"SIGKILL {process.name}")
            process.signal(signal.SIGKILL)
            done[service] += 1
        else:
            print("stopping the broker")
            stack.broker.stop()
            time.sleep(rng.uniform(1.0, 4.0))
            state, took = stack.broker.start()
            print(f"broker back at {state.bootstrap} in {took:.1f} s")
            done["broker"] += 1
    while uploader.is_alive():
        stack.supervisor.poll()
        uploader.join(0.5)
    return sent, done
