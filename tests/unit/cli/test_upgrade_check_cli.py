"""`edgecloud upgrade check`: asks the API for the release given (this CLI's by default),
shows each check as a table and the verdict in one line, and exits 3 when a check failed so
that a script stops before `upgrade start`."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from click.testing import CliRunner, Result

from edgecloud import __version__
from edgecloud.cli.context import CliState
from edgecloud.cli.main import main
from edgecloud.cli.upgrades import NOT_READY
from edgecloud.client import Client, ClientConfig

ASKED: list[httpx.URL] = []


def answer(result: str) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        ASKED.append(request.url)
        checks = [
            {"name": "release", "result": "ok", "detail": "0.2.0 -> 0.3.0"},
            {"name": "alarms", "result": result, "detail": "active: 700.001 major on vnf=fw"},
        ]
        plan = {"controllers": ["b:2/y", "a:1/x"], "batches": [["n1", "n3"], ["n2"]]}
        found = {"current": "0.2.0", "to": "0.3.0", "result": result, "checks": checks}
        found["plan"] = plan
        return httpx.Response(200, json=found)

    return httpx.MockTransport(handle)


def check(transport: httpx.MockTransport, *extra: str) -> Result:
    def factory(config_path: Path | None) -> Client:
        config = ClientConfig(url="https://ctl.test", token="t", ca_cert="")
        return Client(config, transport=transport, sleep=lambda s: None)

    state = CliState(client_factory=factory)
    return CliRunner().invoke(main, ["upgrade", "check", *extra], obj=state)


def test_a_failed_check_is_shown_and_exits_3() -> None:
    result = check(answer("failure"), "--to", "0.3.0", "--reboot", "--max-parallel", "2")
    assert result.exit_code == NOT_READY == 3, result.output
    assert "order: controllers b:2/y, then a:1/x (leader last)" in result.output
    assert "hosts batch 1: n1, n3" in result.output and "hosts batch 2: n2" in result.output
    assert ASKED[-1].params["max_parallel"] == "2"
    assert "700.001 major on vnf=fw" in result.output
    assert "0.2.0 -> 0.3.0: cannot upgrade" in result.output
    assert ASKED[-1].params["to"] == "0.3.0" and ASKED[-1].params["reboot"] == "true"


def test_warnings_let_the_upgrade_go_on_and_json_is_the_api_answer() -> None:
    result = check(answer("warning"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["result"] == "warning"
    assert ASKED[-1].params["to"] == __version__  # this CLI's release by default
    shown = check(answer("ok")).output
    assert "0.2.0 -> 0.3.0: can upgrade" in shown


def test_a_release_of_another_form_is_refused_before_asking() -> None:
    asked = len(ASKED)
    result = check(answer("ok"), "--to", "latest")
    assert result.exit_code == 2
    assert "release 'latest' is not of the form MAJOR.MINOR.PATCH" in result.output
    assert len(ASKED) == asked
