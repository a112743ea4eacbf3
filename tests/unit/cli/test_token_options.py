"""cli/tokens.py and cli/audit.py option parsing: durations and --since, refused in one
sentence that names the option."""

from __future__ import annotations

import datetime as dt

import pytest

from edgecloud.cli.audit import since_value
from edgecloud.cli.tokens import parse_duration
from edgecloud.errors import InvalidInput


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86400), ("12h", 43200), ("45m", 2700), ("2w", 1209600), ("90s", 90)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0d", "3x", "d", "-1h", "1.5h", "", "30 days"])
def test_bad_durations_name_the_option(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"^--expires-in must be .*like 30d") as refused:
        parse_duration(text)
    assert refused.value.field == "--expires-in"


def test_since_is_a_duration_ago_or_a_zoned_date_time() -> None:
    ago = dt.datetime.fromisoformat(since_value("1h"))
    assert abs((dt.datetime.now(dt.UTC) - ago).total_seconds() - 3600) < 5
    assert since_value("2026-11-30T19:00:00Z") == "2026-11-30T19:00:00+00:00"
    assert since_value("2026-11-30T21:00:00+02:00") == "2026-11-30T21:00:00+02:00"
    for bad in ("yesterday", "2026-11-30T19:00:00", "0h"):
        with pytest.raises(InvalidInput, match="--since must be"):
            since_value(bad)
