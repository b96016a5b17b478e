"""Each service's HTTP side: health, readiness, Prometheus metrics, and its own API routes.

One aiohttp application per service process, run beside the Kafka consumer in the same
event loop. Faust's own web server is switched off, so there is one HTTP stack to learn.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from mode import Service as ModeService
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from shared.telemetry import get_logger

ReadinessCheck = Callable[[], Awaitable[None]]
log = get_logger(__name__)

EVENTS_PROCESSED = Counter("genomhub_events_processed", "Events handled successfully", ["service", "event"])
EVENTS_FAILED = Counter("genomhub_events_failed", "Events whose handling failed", ["service", "event"])
DLQ_SENDS = Counter("genomhub_dlq_sends", "Records sent to a dead-letter topic", ["service", "topic"])
LATENCY = Histogram("genomhub_processing_seconds", "Time to handle one event", ["service", "event"])
CONSUMER_LAG = Gauge("genomhub_consumer_lag", "Records not yet consumed", ["service", "topic", "partition"])


def make_web(readiness: list[ReadinessCheck], before_scrape: ReadinessCheck | None = None) -> web.Application:
    """The application with /healthz, /readyz and /metrics; services add their routes to it.

    ``before_scrape`` refreshes gauges that are cheaper to read on demand than to keep
    current, such as consumer lag.
    """

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        failures = []
        for check in readiness:
            try:
                await check()
            except Exception as exc:  # a readiness probe reports, it never raises
                failures.append(f"{getattr(check, '__name__', 'check')}: {exc}")
        if failures:
            return web.json_response({"status": "not ready", "failures": failures}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics(_: web.Request) -> web.Response:
        if before_scrape is not None:
            try:
                await before_scrape()
            except Exception as exc:  # stale gauges beat a failed scrape
                log.warning("metrics refresh failed", error=str(exc))
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application(client_max_size=1 << 20)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


class HttpServer(ModeService):
    """Serves an aiohttp application for as long as the service's worker runs."""

    def __init__(self, web_app: web.Application, host: str, port: int) -> None:
        super().__init__()
        self.web_app = web_app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def on_start(self) -> None:
        self._runner = web.AppRunner(self.web_app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
