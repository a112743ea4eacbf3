"""`edgecloud vnf migrate` and `edgecloud migration list` in-process (CliRunner, a Client over
MockTransport): the request sent, progress while waiting, one result line, refusals and
failures as one sentence with a non-zero exit."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tests.unit.cli.test_stacks_chains_cli import FakeController, run


@pytest.fixture
def api() -> FakeController:
    return FakeController()


def migration(**changes: Any) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": "m-1",
        "vnf": "fw",
        "source_host": "node1",
        "destination_host": "node2",
        "kind": "live",
        "max_downtime_ms": 100,
        "status": "queued",
        "error": None,
        "stats": {},
        "created_at": "2026-11-30T16:00:00Z",
        "finished_at": None,
    }
    return {**view, **changes}


def test_migrate_waits_and_prints_one_result_line(api: FakeController) -> None:
    api.on("POST", "/v1/vnfs/fw/migrate", httpx.Response(202, json=migration()))
    done = migration(status="done", stats={"total_ms": 1851.0, "downtime_ms": 52.0, "bytes": 9})
    api.on(
        "GET",
        "/v1/migrations/m-1",
        httpx.Response(200, json=migration(status="preparing")),
        httpx.Response(200, json=migration(status="migrating")),
        httpx.Response(200, json=done),
    )
    result = run(api, "vnf", "migrate", "fw", "--to", "node2", "--wait")
    assert result.exit_code == 0, result.output
    assert api.body(0) == {"host": "node2", "cold": False}
    assert "migration of fw to node2: preparing" in result.stderr
    assert "migration of fw to node2: migrating" in result.stderr
    assert result.stdout.strip() == (
        "vnf fw migrated (live) from node1 to node2: downtime 52 ms, total 1.9 s"
    )


def test_migrate_sends_the_downtime_limit_and_refuses_one_out_of_range(
    api: FakeController,
) -> None:
    api.on("POST", "/v1/vnfs/fw/migrate", httpx.Response(202, json=migration()))
    result = run(api, "vnf", "migrate", "fw", "--max-downtime", "40")
    assert result.exit_code == 0, result.output
    assert api.body(0) == {"cold": False, "max_downtime_ms": 40}
    refused = run(api, "vnf", "migrate", "fw", "--max-downtime", "5")
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert "--max-downtime" in refused.stderr


def test_failed_migration_is_one_sentence_and_exit_1(api: FakeController) -> None:
    api.on("POST", "/v1/vnfs/fw/migrate", httpx.Response(202, json=migration(kind="cold")))
    failed = migration(kind="cold", status="failed", error="host node2 did not report it")
    api.on("GET", "/v1/migrations/m-1", httpx.Response(200, json=failed))
    result = run(api, "vnf", "migrate", "fw", "--cold", "--wait")
    assert result.exit_code == 1
    assert api.body(0) == {"cold": True}
    assert result.stderr.strip().splitlines()[-1] == (
        "error: migration of fw failed, it stays on node1: host node2 did not report it"
    )


def test_refusal_is_the_server_sentence(api: FakeController) -> None:
    message = "VNF fw has host PCI devices (0000:03:00.1), which cannot move live"
    api.on(
        "POST",
        "/v1/vnfs/fw/migrate",
        httpx.Response(409, json={"error": {"code": "conflict", "message": message}}),
    )
    result = run(api, "vnf", "migrate", "fw")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert message in result.stderr


def test_migration_list_shows_figures(api: FakeController) -> None:
    rows = [migration(status="done", stats={"total_ms": 900.0, "downtime_ms": 40.0})]
    api.on("GET", "/v1/migrations", httpx.Response(200, json=rows))
    result = run(api, "migration", "list")
    assert result.exit_code == 0, result.output
    assert "fw" in result.stdout and "40.0" in result.stdout and "node2" in result.stdout
