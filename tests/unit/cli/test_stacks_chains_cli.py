"""`edgecloud stack`, `chain` and `probe` in-process: CliRunner, a Client over MockTransport."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from edgecloud.cli import probe as cli_probe
from edgecloud.cli.context import CliState
from edgecloud.cli.main import main
from edgecloud.client import Client, ClientConfig
from edgecloud.errors import NotFound
from edgecloud.probe import ProbeResult, ProbeStats

TEMPLATE = "heat_template_version: 2018-08-31\nresources: {}\n"
STACK = {
    "id": "s1",
    "name": "edge",
    "status": "create_in_progress",
    "status_reason": None,
    "parameters": {"flavor": "small"},
    "resources": [
        {"name": "router", "type": "OS::Nova::Server", "physical_id": None, "state": "pending"}
    ],
    "outputs": {},
    "created_at": "2024-05-01T10:00:00Z",
    "updated_at": "2024-05-01T10:00:00Z",
}


def chain_view(**changes: Any) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": "c-1",
        "name": "c1",
        "customer": "acme",
        "host": "edge-1",
        "ingress_port": "cust0",
        "egress_port": "net0",
        "status": "active",
        "path": ["router", "firewall"],
        "services": [
            {
                "name": "router",
                "position": 0,
                "state": "active",
                "customer_vnic": 0,
                "network_vnic": 1,
                "instance_id": "i-1",
            },
            {
                "name": "firewall",
                "position": 1,
                "state": "active",
                "customer_vnic": 0,
                "network_vnic": 1,
                "instance_id": "i-2",
            },
        ],
        "operation": None,
        "last_result": None,
        "last_error": None,
        "path_version": 3,
        "path_applied": True,
    }
    return {**view, **changes}


class FakeController:
    """Answers (method, path) from a table; each answer may be a list consumed in order."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[httpx.Response]] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, *responses: httpx.Response) -> None:
        self.routes[(method, path)] = list(responses)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answers = self.routes.get((request.method, request.url.path))
        if not answers:
            return httpx.Response(404, json={"error": {"code": "nf", "message": "no route"}})
        return answers.pop(0) if len(answers) > 1 else answers[0]

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


@pytest.fixture
def api() -> FakeController:
    return FakeController()


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "svc.yaml"
    path.write_text(TEMPLATE)
    return path


def run(api: FakeController, *args: str) -> Result:
    def factory(config_path: Path | None) -> Client:
        config = ClientConfig(url="https://ctl.test", token="t", ca_cert="")
        return Client(config, transport=httpx.MockTransport(api), sleep=lambda s: None)

    state = CliState(client_factory=factory)
    return CliRunner().invoke(main, list(args), obj=state, prog_name="edgecloud")


# stacks -------------------------------------------------------------------------------------
def test_stack_create_sends_the_file_text_and_parameters(
    api: FakeController, template: Path, tmp_path: Path
) -> None:
    api.on("POST", "/v1/stacks", httpx.Response(201, json=STACK))
    params = tmp_path / "params.yaml"
    params.write_text("flavor: large\nimage: cirros\n")
    result = run(
        api, "stack", "create", "edge", "-t", str(template), "--parameters-file", str(params),
        "-P", "flavor=small", "-P", "cmdline=a=b",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert api.body() == {
        "name": "edge",
        "template": TEMPLATE,
        "parameters": {"flavor": "small", "image": "cirros", "cmdline": "a=b"},
    }
    assert "router" in result.stdout


def test_stack_update_puts_template(api: FakeController, template: Path) -> None:
    api.on("PUT", "/v1/stacks/edge", httpx.Response(202, json=STACK))
    result = run(api, "stack", "update", "edge", "-t", str(template), "--json")
    assert result.exit_code == 0, result.output
    assert api.body() == {"template": TEMPLATE, "parameters": {}}
    assert json.loads(result.stdout) == STACK


def test_missing_template_file_is_one_sentence(api: FakeController, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = run(api, "stack", "create", "edge", "-t", str(missing))
    assert result.exit_code == 2
    assert result.stderr == f"error: template file {missing} does not exist\n"
    assert "Traceback" not in result.output
    assert api.requests == []


def test_bad_parameter_is_a_usage_error(api: FakeController, template: Path) -> None:
    result = run(api, "stack", "create", "edge", "-t", str(template), "-P", "flavor")
    assert result.exit_code == 2
    assert "'flavor' is not KEY=VALUE" in result.stderr
    assert api.requests == []


def test_stack_delete_wait_polls_until_gone(api: FakeController) -> None:
    api.on("DELETE", "/v1/stacks/edge", httpx.Response(202, json=STACK))
    gone = httpx.Response(404, json={"error": {"code": "not_found", "message": "no stack"}})
    api.on("GET", "/v1/stacks/edge", httpx.Response(200, json=STACK), gone)
    result = run(api, "stack", "delete", "edge", "--wait")
    assert result.exit_code == 0, result.output
    assert result.stdout == "stack edge deleted\n"


# chains -------------------------------------------------------------------------------------
def test_chain_create_keeps_service_order(api: FakeController, tmp_path: Path) -> None:
    for name in ("router", "wanopt", "firewall"):
        (tmp_path / f"{name}.yaml").write_text(f"# {name}\n{TEMPLATE}")
    api.on("POST", "/v1/chains", httpx.Response(202, json=chain_view()))
    result = run(
        api, "chain", "create", "c1", "--customer", "acme", "--host", "edge-1",
        "--ingress", "cust0", "--egress", "net0",
        "--service", f"router={tmp_path / 'router.yaml'}",
        "--service", f"wanopt={tmp_path / 'wanopt.yaml'}",
        "--service", f"firewall={tmp_path / 'firewall.yaml'}",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    body = api.body()
    assert [s["name"] for s in body["services"]] == ["router", "wanopt", "firewall"]
    assert body["services"][1] == {
        "name": "wanopt",
        "template": f"# wanopt\n{TEMPLATE}",
        "parameters": {},
    }
    assert (body["ingress_port"], body["egress_port"]) == ("cust0", "net0")
    assert "router -> firewall" in result.stdout


def test_chain_insert_after_sends_after(api: FakeController, template: Path) -> None:
    busy = chain_view(operation={"kind": "insert", "phase": "bring-up"})
    api.on("POST", "/v1/chains/c1/services", httpx.Response(202, json=busy))
    result = run(
        api, "chain", "insert", "c1", "wanopt", "-t", str(template), "--after", "router",
        "-P", "mode=fast", "--health-timeout", "30",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert api.body() == {
        "name": "wanopt",
        "template": TEMPLATE,
        "parameters": {"mode": "fast"},
        "health_timeout": 30.0,
        "after": "router",
    }
    assert "insert started" in result.stdout


def test_chain_insert_takes_one_place(api: FakeController, template: Path) -> None:
    result = run(api, "chain", "insert", "c1", "x", "-t", str(template), "--first", "--after", "a")
    assert result.exit_code == 2
    assert "at most one of --before, --after, --first and --last" in result.stderr
    assert api.requests == []


def test_chain_wait_reports_progress_and_switchover(api: FakeController, template: Path) -> None:
    busy = chain_view(operation={"kind": "insert", "phase": "bring-up"})
    acked = chain_view(operation={"kind": "insert", "phase": "acked"}, path_applied=False)
    done = chain_view(
        path=["router", "wanopt", "firewall"],
        last_result={"kind": "insert", "switchover_ms": 12.3, "finished": "2024-05-01T10:01:00Z"},
    )
    api.on("POST", "/v1/chains/c1/services", httpx.Response(202, json=busy))
    api.on(
        "GET",
        "/v1/chains/c1",
        *(httpx.Response(200, json=v) for v in (busy, busy, acked, done)),
    )
    result = run(api, "chain", "insert", "c1", "wanopt", "-t", str(template), "--wait")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "chain c1: insert bring-up",
        "chain c1: insert acked",
        "chain c1: active",
    ]
    assert result.stdout == (
        "chain c1: insert done, switchover 12.3 ms; path: router -> wanopt -> firewall\n"
    )


def test_chain_wait_on_failed_operation_exits_1(api: FakeController) -> None:
    earlier = {"kind": "insert", "failed": "old", "finished": "2024-05-01T09:00:00Z"}
    error = "replace failed, old path kept: vnf c1-fw2 did not become healthy within 30 s"
    busy = chain_view(
        operation={"kind": "replace", "phase": "bring-up"},
        last_error="insert failed, old path kept: earlier",
        last_result=earlier,
    )
    failed = chain_view(
        last_error=error,
        last_result={"kind": "replace", "failed": "timeout", "finished": "2024-05-01T10:00:00Z"},
    )
    api.on("DELETE", "/v1/chains/c1/services/firewall", httpx.Response(202, json=busy))
    api.on("GET", "/v1/chains/c1", httpx.Response(200, json=busy), httpx.Response(200, json=failed))
    result = run(api, "chain", "remove", "c1", "firewall", "--wait")
    assert result.exit_code == 1
    assert result.stderr.endswith(f"error: chain c1: {error}\n")
    assert "Traceback" not in result.output


def test_chain_wait_ignores_an_earlier_failure(api: FakeController) -> None:
    earlier = {"kind": "insert", "failed": "old", "finished": "2024-05-01T09:00:00Z"}
    stale = {"last_error": "insert failed, old path kept: earlier", "last_result": earlier}
    busy = chain_view(operation={"kind": "reorder", "phase": "acked"}, **stale)
    api.on("POST", "/v1/chains/c1/order", httpx.Response(202, json=busy))
    api.on("GET", "/v1/chains/c1", httpx.Response(200, json=chain_view(**stale)))
    result = run(api, "chain", "reorder", "c1", "firewall", "router", "--wait")
    assert result.exit_code == 0, result.output
    assert api.body(0) == {"services": ["firewall", "router"]}
    assert result.stdout.startswith("chain c1: reorder done; path: ")


def test_chain_show_and_list_print_the_path(api: FakeController) -> None:
    api.on("GET", "/v1/chains/c1", httpx.Response(200, json=chain_view()))
    api.on("GET", "/v1/chains", httpx.Response(200, json=[chain_view()]))
    shown = run(api, "chain", "show", "c1")
    listed = run(api, "chain", "list")
    assert shown.exit_code == listed.exit_code == 0, shown.output + listed.output
    assert "router -> firewall" in shown.stdout
    assert "router -> firewall" in listed.stdout
    assert "CUSTOMER VNIC" in shown.stdout


def test_chain_delete_wait_polls_until_gone(api: FakeController) -> None:
    deleting = chain_view(status="deleting", operation={"kind": "delete", "phase": "acked"})
    api.on("DELETE", "/v1/chains/c1", httpx.Response(202, json=deleting))
    gone = httpx.Response(404, json={"error": {"code": "not_found", "message": "no chain"}})
    api.on("GET", "/v1/chains/c1", httpx.Response(200, json=deleting), gone)
    result = run(api, "chain", "delete", "c1", "--wait")
    assert result.exit_code == 0, result.output
    assert result.stdout == "chain c1 deleted\n"


def test_chain_create_missing_service_file(api: FakeController, tmp_path: Path) -> None:
    missing = tmp_path / "gone.yaml"
    result = run(
        api, "chain", "create", "c1", "--customer", "a", "--host", "h", "--ingress", "p0",
        "--egress", "p1", "--service", f"fw={missing}",
    )  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr == f"error: template file {missing} does not exist\n"
    assert api.requests == []


# probe --------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", ["0", "-5", "fast", "2000000"])
def test_probe_bad_rate_is_a_usage_error(api: FakeController, rate: str) -> None:
    result = run(api, "probe", "--from-ns", "a", "--to-ns", "b", "--to", "10.0.0.2", "--rate", rate)
    assert result.exit_code == 2
    assert "Invalid value for '--rate'" in result.stderr
    assert "Traceback" not in result.output


def test_probe_missing_namespace_is_one_sentence(
    api: FakeController, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def missing(*args: Any, **kwargs: Any) -> None:
        raise NotFound('probe receiver: Cannot open network namespace "b": No such file')

    monkeypatch.setattr(cli_probe, "probe_in_namespaces", missing)
    result = run(api, "probe", "--from-ns", "a", "--to-ns", "b", "--to", "10.0.0.2")
    assert result.exit_code == 1
    assert result.stderr == (
        'error: probe receiver: Cannot open network namespace "b": No such file\n'
    )


def test_probe_prints_the_counts(api: FakeController, monkeypatch: pytest.MonkeyPatch) -> None:
    stats = ProbeStats(sent=1000)
    for seq in (*range(0, 400), *range(410, 1000)):
        stats.record(seq, seq / 1000)
    seen: list[Any] = []

    async def fake(*args: Any, **kwargs: Any) -> ProbeResult:
        seen.append(args)
        return ProbeResult(stats.report(), 1000, 1.0, 0.0, 1.0, 0)

    monkeypatch.setattr(cli_probe, "probe_in_namespaces", fake)
    args = ("probe", "--from-ns", "a", "--to-ns", "b", "--to", "10.0.0.2", "--duration", "1")
    result = run(api, *args)
    assert result.exit_code == 0, result.output
    assert seen == [("a", "b", "10.0.0.2", 1000, 1.0, 47800)]
    assert "10 (1.00%)" in result.stdout
    assert json.loads(run(api, *args, "--json").stdout)["lost"] == 10
