"""`up` waits for each host to be online with its agent heard from since that agent started:
after a restart the store may still say "online" from before the agent connected."""

import datetime as dt
from pathlib import Path

import pytest

from edgecloud.allinone.local_enrollment import heard_since, main

START = dt.datetime(2026, 12, 1, 6, 0, 0, tzinfo=dt.UTC).timestamp()


def test_online_counts_only_when_heard_from_since_the_agent_started() -> None:
    assert heard_since({"availability": "online", "last_seen_at": "2026-12-01T06:00:01"}, START)
    assert heard_since(
        {"availability": "online", "last_seen_at": "2026-12-01T06:00:00+00:00"}, START
    )
    # online in the store from before: not this agent
    assert not heard_since({"availability": "online", "last_seen_at": "2026-12-01T05:59:59"}, START)
    assert not heard_since(
        {"availability": "offline", "last_seen_at": "2026-12-01T06:00:05"}, START
    )
    assert not heard_since({"availability": "online", "last_seen_at": None}, START)


def test_a_failed_step_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "admin-token"
    token.write_text("t")
    code = main(
        ["online", "https://127.0.0.1:9", str(tmp_path / "ca.crt"), str(token), "h1", "1", "0"]
    )
    assert code == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
