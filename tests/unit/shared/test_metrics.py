"""The metrics every service exports exist from start-up, name their units, and are what the alerts use."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.receiver.api import OPERATIONS
from shared.events import Region
from shared.metrics import (
    CONSUMER_LAG,
    RECEIVED_VIA,
    RequestOutcome,
    prepare_receiver,
    prepare_service,
    request_outcome,
)
from shared.topics import EMITS, SUBSCRIPTIONS, dlq_name, topic_name

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "k8s" / "monitoring" / "alerts.yaml"


def promtool() -> str | None:
    """``promtool`` from GENOMHUB_PROMTOOL, the PATH or Go's bin folder, if one is installed."""
    candidates = [os.environ.get("GENOMHUB_PROMTOOL"), shutil.which("promtool")]
    candidates.append(str(Path(os.environ.get("GOBIN") or Path.home() / "go" / "bin") / "promtool"))
    return next((c for c in candidates if c and Path(c).is_file() and os.access(c, os.X_OK)), None)


def exposition() -> str:
    for service in SUBSCRIPTIONS:
        prepare_service(service)
    prepare_receiver(OPERATIONS)
    return generate_latest().decode()


def samples(text: str) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    return {
        (s.name, frozenset(s.labels.items()))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_every_service_series_exists_before_anything_happened() -> None:
    found = samples(exposition())
    expected: set[tuple[str, frozenset[tuple[str, str]]]] = set()
    for service, models in SUBSCRIPTIONS.items():
        for model in models:
            pair = frozenset({("service", service), ("event", model.event_name)})
            expected |= {
                ("genomhub_events_processed_total", pair),
                ("genomhub_events_failed_total", pair),
                ("genomhub_processing_seconds_count", pair),
                (
                    "genomhub_dlq_sends_total",
                    frozenset({("service", service), ("topic", dlq_name(topic_name(model)))}),
                ),
            }
        for model in EMITS.get(service, ()):
            expected.add(
                (
                    "genomhub_events_emitted_total",
                    frozenset({("service", service), ("event", model.event_name)}),
                )
            )
    assert expected - found == set()
    assert (
        "genomhub_events_emitted_total",
        frozenset({("service", "receiver"), ("event", "file-received")}),
    ) in found


def test_every_receiver_series_exists_before_any_request() -> None:
    found = samples(exposition())
    for operation in OPERATIONS:
        for outcome in RequestOutcome:
            labels = frozenset({("operation", operation), ("outcome", outcome.value)})
            assert ("genomhub_receiver_requests_total", labels) in found
    for region in Region:
        for via in RECEIVED_VIA:
            labels = frozenset({("region", region.value), ("via", via)})
            assert ("genomhub_receiver_received_bytes_total", labels) in found
        assert ("genomhub_receiver_uploads_in_flight", frozenset({("region", region.value)})) in found


def test_the_lag_gauge_names_its_unit() -> None:
    (family,) = CONSUMER_LAG.describe()
    assert family.name == "genomhub_consumer_lag_records" and family.type == "gauge"
    assert not [m for m in REGISTRY.collect() if m.name == "genomhub_consumer_lag"]


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, RequestOutcome.ACCEPTED),
        (201, RequestOutcome.ACCEPTED),
        (202, RequestOutcome.ACCEPTED),
        (400, RequestOutcome.REFUSED),
        (401, RequestOutcome.UNAUTHORISED),
        (403, RequestOutcome.UNAUTHORISED),
        (404, RequestOutcome.REFUSED),
        (409, RequestOutcome.REFUSED),
        (413, RequestOutcome.REFUSED),
        (429, RequestOutcome.BUSY),
        (500, RequestOutcome.FAILED),
        (503, RequestOutcome.BUSY),
    ],
)
def test_a_status_has_its_outcome(status: int, outcome: RequestOutcome) -> None:
    assert request_outcome(status) is outcome


def test_promtool_accepts_the_exposition() -> None:
    tool = promtool()
    if tool is None:
        pytest.skip("promtool is not installed (go install github.com/prometheus/prometheus/cmd/promtool)")
    checked = subprocess.run(
        [tool, "check", "metrics"], input=exposition(), capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert not checked.stdout.strip() and not checked.stderr.strip(), checked.stdout + checked.stderr


def alert_groups() -> list[dict[str, object]]:
    rule = yaml.safe_load(ALERTS.read_text())
    assert rule["kind"] == "PrometheusRule" and rule["apiVersion"] == "monitoring.coreos.com/v1"
    groups: list[dict[str, object]] = rule["spec"]["groups"]
    return groups


def test_the_alerts_use_only_series_the_services_export() -> None:
    exported = {name for name, _ in samples(exposition())}
    used: set[str] = set()
    for group in alert_groups():
        rules = group["rules"]
        assert isinstance(rules, list)
        for rule in rules:
            used |= set(re.findall(r"\bgenomhub_[a-z_]+", rule["expr"]))
    assert used, "the alerts name no genomhub series"
    assert used - exported - {"genomhub_consumer_lag_records"} == set()
    assert "genomhub_consumer_lag_records" in used


def test_promtool_accepts_the_alert_rules(tmp_path: Path) -> None:
    tool = promtool()
    if tool is None:
        pytest.skip("promtool is not installed (go install github.com/prometheus/prometheus/cmd/promtool)")
    rules = tmp_path / "genomhub.rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": alert_groups()}))
    checked = subprocess.run(
        [tool, "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
