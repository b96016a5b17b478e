"""`genomhub up`'s status table as a log receives it."""

from __future__ import annotations

from tools.stack.supervisor import ServiceStatus, render


def test_one_row_a_service_with_its_figures_under_their_headings() -> None:
    text = render(
        [
            ServiceStatus("receiver", 1234, True, 0, None, 0),
            ServiceStatus("harmoniser", None, False, 3, 12, 1),
        ]
    )
    head, rule, *rows = text.splitlines()
    assert head.split() == ["service", "pid", "ready", "restarts", "lag", "dlq"]
    assert set(rule) == {"─"}
    assert [row.split() for row in rows] == [
        ["receiver", "1234", "yes", "0", "-", "0"],
        ["harmoniser", "-", "no", "3", "12", "1"],
    ]
    assert "\x1b" not in text, "a log gets no terminal escapes"
