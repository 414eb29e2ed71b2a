"""Timestamps as the layouts carry them: the fast ISO reader agrees with the regex reader."""

from __future__ import annotations

import calendar

import pytest

from sidecar.log import layout

OCT_9_2025_17_06_39 = float(calendar.timegm((2025, 10, 9, 17, 6, 39)))

STAMPS = [
    pytest.param("2025-10-09T17:06:39.736Z", OCT_9_2025_17_06_39 + 0.736, id="quarkus-json-utc"),
    pytest.param("2025-10-09T17:06:39", OCT_9_2025_17_06_39, id="no-zone-is-utc"),
    pytest.param("2025-10-09 17:06:39,736", OCT_9_2025_17_06_39 + 0.736, id="space-and-comma"),
    pytest.param("2025-10-09T17:06:39+02:00", OCT_9_2025_17_06_39 - 7200, id="offset"),
    pytest.param(
        "2025-10-09T17:06:39.7+0530", OCT_9_2025_17_06_39 + 0.7 - 19800, id="offset-no-colon"
    ),
    pytest.param(
        "2025-10-09T17:06:39.736123456Z", OCT_9_2025_17_06_39 + 0.736123, id="kubectl-nanoseconds"
    ),
    pytest.param(
        "2025-10-09T17:06:39.736Z trailing", OCT_9_2025_17_06_39 + 0.736, id="trailing-text"
    ),
]


@pytest.mark.parametrize(("text", "expected"), STAMPS)
def test_iso_timestamps(text: str, expected: float) -> None:
    assert layout._iso_to_epoch(text) == pytest.approx(expected, abs=1e-6)
    assert layout._iso_to_epoch_by_regex(text) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("text", ["", "yesterday", "2025-13-45T99:99:99Z", "17:06:39"])
def test_not_a_timestamp(text: str) -> None:
    assert layout._iso_to_epoch(text) is None


def test_a_json_header_takes_its_time_from_the_timestamp_field() -> None:
    line = (
        '{"timestamp":"2025-10-09T17:06:39.736Z","sequence":1,"loggerName":"org.keycloak",'
        '"level":"ERROR","message":"boom","threadName":"main"}'
    )
    header = layout.parse_header(line)
    assert header.layout == "json"
    assert header.timestamp == pytest.approx(OCT_9_2025_17_06_39 + 0.736)
    assert (header.level, header.category, header.message) == ("ERROR", "org.keycloak", "boom")
