"""Jaeger v2 all-in-one on loopback: built by ``build.sh`` into the cache, run in memory.

The services export spans over OTLP/HTTP to it; the end-to-end test and the demo read a
submission's trace back from its query API (``/api/v3/traces/{id}``).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.background import BackgroundProcess, port_free

VERSION = "v1.76.0"  # the Go module tag of Jaeger v2.13.0
BUILD = Path(__file__).with_name("build.sh")


class JaegerError(RuntimeError):
    pass


@dataclass(frozen=True)
class JaegerState:
    pid: int
    otlp_http: int
    otlp_grpc: int
    query: int

    @property
    def otlp_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.otlp_http}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.query}"

    def trace_url(self, trace_id: str) -> str:
        return f"{self.query_url}/api/v3/traces/{trace_id}"


class LocalJaeger:
    def __init__(self, home: Path, cache: Path) -> None:
        self.binary = cache.resolve() / "jaeger" / f"jaeger-{VERSION}"
        self.dir = home.resolve() / "jaeger"
        self.process = BackgroundProcess(self.dir / "jaeger.json", self.dir / "jaeger.log")

    def built(self) -> bool:
        return self.binary.exists()

    def build(self) -> None:
        """Compile Jaeger from the Go module proxy, once (minutes when Go's cache is cold)."""
        env = {**os.environ, "GENOMHUB_CACHE": str(self.binary.parent.parent)}
        result = subprocess.run(["bash", str(BUILD)], env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise JaegerError(f"building Jaeger failed:\n{result.stdout}{result.stderr}")

    def running(self) -> JaegerState | None:
        data = self.process.running()
        if data is None:
            return None
        return JaegerState(
            int(data["pid"]), int(data["otlp_http"]), int(data["otlp_grpc"]), int(data["query"])
        )

    def start(self, otlp_http: int = 4318, otlp_grpc: int = 4317, query: int = 16686) -> JaegerState:
        live = self.running()
        if live is not None:
            return live
        if not self.built():
            raise JaegerError(f"Jaeger is not built: run {BUILD}")
        busy = [p for p in (otlp_http, otlp_grpc, query) if not port_free(p)]
        if busy:
            raise JaegerError(f"ports {busy} are taken: is another Jaeger running?")
        args = [
            str(self.binary),
            "--set", f"receivers.otlp.protocols.http.endpoint=127.0.0.1:{otlp_http}",
            "--set", f"receivers.otlp.protocols.grpc.endpoint=127.0.0.1:{otlp_grpc}",
            "--set", f"extensions.jaeger_query.http.endpoint=127.0.0.1:{query}",
            "--set", "extensions.jaeger_query.grpc.endpoint=127.0.0.1:0",
            "--set", "extensions.jaeger_query.enable_tracing=false",
            # Only OTLP in and the query API out: the all-in-one's other receivers (Jaeger,
            # Zipkin), extensions (health check, zpages, expvar, remote sampling) and its own
            # metrics bind fixed ports, so a second Jaeger on the machine (a test's beside a
            # stack's) would exit.
            "--set", "service.telemetry.metrics.level=none",
            "--set", "service.pipelines.traces.receivers=[otlp]",
            "--set", "service.extensions=[jaeger_storage,jaeger_query]",
        ]  # fmt: skip
        proc = self.process.launch(args, otlp_http=otlp_http, otlp_grpc=otlp_grpc, query=query)
        state = JaegerState(proc.pid, otlp_http, otlp_grpc, query)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise JaegerError(f"Jaeger exited with {proc.returncode}; see {self.process.log}")
            try:
                with urllib.request.urlopen(f"{state.query_url}/api/v3/services", timeout=1):
                    return state
            except OSError:
                time.sleep(0.2)
        self.process.stop()
        raise JaegerError("Jaeger did not answer within 30 s")

    def stop(self) -> bool:
        return self.process.stop()


def fetch_trace(state: JaegerState, trace_id: str) -> dict[str, Any] | None:
    """The trace as OTLP JSON, or None while Jaeger has none of it."""
    try:
        with urllib.request.urlopen(state.trace_url(trace_id), timeout=5) as response:
            data: dict[str, Any] = json.load(response)
            return data
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def spans_by_service(trace: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every span of a trace with the service that emitted it, in start-time order."""
    found: list[tuple[str, dict[str, Any]]] = []
    for resource_spans in trace.get("result", {}).get("resourceSpans", []):
        attrs = {a["key"]: a["value"] for a in resource_spans.get("resource", {}).get("attributes", [])}
        service = attrs.get("service.name", {}).get("stringValue", "?")
        for scope in resource_spans.get("scopeSpans", []):
            found.extend((service, span) for span in scope.get("spans", []))
    return sorted(found, key=lambda item: int(item[1]["startTimeUnixNano"]))


def ancestry(spans: list[tuple[str, dict[str, Any]]], span_id: str) -> list[str]:
    """The services met walking from a span up to its trace's root, repeats folded."""
    by_id = {span["spanId"]: (service.removeprefix("genomhub-"), span) for service, span in spans}
    walk: list[str] = []
    current: str | None = span_id
    while current in by_id:
        service, span = by_id[current]
        if not walk or walk[-1] != service:
            walk.append(service)
        current = span.get("parentSpanId") or None
    return walk


def longest_chain(spans: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The longest causal chain of services in a trace, root first."""
    chains = [ancestry(spans, span["spanId"]) for _, span in spans]
    return list(reversed(max(chains, key=len))) if chains else []
