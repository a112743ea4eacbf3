"""The edgecloud CLI end to end in-process: click's CliRunner, a Client over MockTransport."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner, Result

from edgecloud.cli.context import CliState
from edgecloud.cli.main import main, register_commands
from edgecloud.client import Client, ClientConfig

VNF = {
    "id": "6f1c",
    "name": "web-1",
    "image": "cirros",
    "flavor": "small",
    "host": "edge-1",
    "anti_affinity_group": None,
    "desired_state": "running",
    "status": "running",
    "power_state": "running",
    "boot_id": None,
    "fault": None,
    "fault_at": None,
    "binding_verified": True,
    "binding": "verified",
    "nics": [
        {"index": 0, "network": "wan-net", "model": "virtio", "mac": "52:54:00:00:00:01"},
        {"index": 1, "network": "lan-net", "model": "e1000", "mac": "52:54:00:00:00:02"},
    ],
    "created_at": "2024-05-01T10:00:00.123456Z",
    "updated_at": "2024-05-01T10:00:05Z",
}


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


def run(api: FakeController, *args: str) -> Result:
    def factory(config_path: Path | None) -> Client:
        config = ClientConfig(url="https://ctl.test", token="t", ca_cert="")
        return Client(config, transport=httpx.MockTransport(api), sleep=lambda s: None)

    state = CliState(client_factory=factory)
    return CliRunner().invoke(main, list(args), obj=state, prog_name="edgecloud")


def test_vnf_create_keeps_nic_order(api: FakeController) -> None:
    api.on("POST", "/v1/vnfs", httpx.Response(201, json=VNF))
    result = run(
        api, "vnf", "create", "web-1", "--image", "cirros", "--flavor", "small",
        "--nic", "wan-net,model=virtio,slot=5", "--nic", "lan-net", "--nic", "mgmt,tag=oam",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert api.body()["nics"] == [
        {"network": "wan-net", "model": "virtio", "pci_slot": 5},
        {"network": "lan-net"},
        {"network": "mgmt", "tag": "oam"},
    ]
    assert "desired_state" not in api.body()


def test_vnf_create_sends_the_recovery_policy_and_refuses_an_unknown_one(
    api: FakeController,
) -> None:
    api.on("POST", "/v1/vnfs", httpx.Response(201, json=VNF))
    args = ("vnf", "create", "fw", "--image", "i", "--flavor", "f")
    result = run(api, *args, "--recovery-policy", "restart")
    assert result.exit_code == 0, result.output
    assert api.body()["recovery_policy"] == "restart"
    plain = run(api, *args)
    assert plain.exit_code == 0 and "recovery_policy" not in api.body()  # the server's default
    bad = run(api, *args, "--recovery-policy", "evacuate")
    assert bad.exit_code == 2 and "evacuate" in bad.output and "Traceback" not in bad.output


def test_json_output_is_parsable(api: FakeController) -> None:
    api.on("GET", "/v1/vnfs/web-1", httpx.Response(200, json=VNF))
    result = run(api, "vnf", "show", "web-1", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == VNF


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("lan,modle=virtio", "unknown key 'modle'"),
        ("lan,slot=x", "slot=x is not a number"),
        ("model=virtio", "must start with the network name"),
        ("lan,,tag=a", "empty part between commas"),
        ("lan,tag", "'tag' is not KEY=VALUE"),
    ],
)
def test_bad_nic_spec_is_a_usage_error(api: FakeController, spec: str, complaint: str) -> None:
    result = run(api, "vnf", "create", "x", "--image", "i", "--flavor", "f", "--nic", spec)
    assert result.exit_code == 2
    assert f"Error: Invalid value for '--nic': '{spec}': " in result.stderr
    assert complaint in result.stderr
    assert "Traceback" not in result.output
    assert api.requests == []


def test_server_422_prints_error_and_exits_1(api: FakeController) -> None:
    body = {"error": {"code": "invalid", "message": "unknown model", "field": "nics[0].model"}}
    api.on("POST", "/v1/vnfs", httpx.Response(422, json=body))
    result = run(api, "vnf", "create", "x", "--image", "i", "--flavor", "f", "--nic", "lan,model=z")
    assert result.exit_code == 1
    assert result.stderr == "error: nics[0].model: unknown model\n"
    assert result.stdout == ""


def test_missing_config_is_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    result = CliRunner().invoke(main, ["--config", str(path), "vnf", "list"])
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: no edgecloud config at {path}: start a site with `edgecloud up` or pass --config\n"
    )


def test_debug_lets_the_exception_through(tmp_path: Path) -> None:
    httpx_logger = logging.getLogger("httpx")
    level = httpx_logger.level
    try:
        args = ["--debug", "--config", str(tmp_path / "x"), "host", "list"]
        result = CliRunner().invoke(main, args)
    finally:
        httpx_logger.setLevel(level)  # --debug turns on request logging for the process
    assert result.exit_code == 1
    assert "no edgecloud config" in str(result.exception)


def test_ctrl_c_exits_130() -> None:
    def interrupted(request: httpx.Request) -> httpx.Response:
        raise KeyboardInterrupt

    config = ClientConfig(url="https://ctl.test", token="t", ca_cert="")
    state = CliState(client_factory=lambda path: Client(config, httpx.MockTransport(interrupted)))
    result = CliRunner().invoke(main, ["host", "list"], obj=state)
    assert result.exit_code == 130


def test_list_table_shows_names(api: FakeController) -> None:
    other = {**VNF, "name": "fw-2", "status": "building", "host": None, "binding": "unverifiable"}
    api.on("GET", "/v1/vnfs", httpx.Response(200, json=[VNF, other]))
    result = run(api, "vnf", "list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "POWER", "STATE", "BINDING", "HOST", "IMAGE",
                                "FLAVOR", "UPDATED", "AT"]  # fmt: skip
    assert "web-1" in lines[1] and "edge-1" in lines[1] and " verified " in lines[1]
    assert "fw-2" in lines[2] and "building" in lines[2] and "unverifiable" in lines[2]


def test_show_has_a_nic_sub_table_and_short_times(api: FakeController) -> None:
    api.on("GET", "/v1/vnfs/web-1", httpx.Response(200, json=VNF))
    result = run(api, "vnf", "show", "web-1")
    assert result.exit_code == 0
    assert "wan-net" in result.stdout and "lan-net" in result.stdout
    assert "2024-05-01" in result.stdout and "T10:00" not in result.stdout
    assert re.search(r"^binding_verified +yes", result.stdout, re.MULTILINE)


def test_wait_ends_in_error_with_the_fault(api: FakeController) -> None:
    failed = {**VNF, "status": "error", "fault": "no host has 64 GiB free"}
    api.on("POST", "/v1/vnfs", httpx.Response(201, json={**VNF, "status": "scheduling"}))
    api.on("GET", "/v1/vnfs/web-1", httpx.Response(200, json=failed))
    result = run(api, "vnf", "create", "web-1", "--image", "i", "--flavor", "f", "--wait")
    assert result.exit_code == 1
    assert "vnf web-1: error on edge-1" in result.stderr
    assert result.stderr.endswith("error: vnf web-1 failed: no host has 64 GiB free\n")


def test_wait_reports_progress_until_running(api: FakeController) -> None:
    api.on("POST", "/v1/vnfs", httpx.Response(201, json={**VNF, "status": "scheduling"}))
    api.on(
        "GET",
        "/v1/vnfs/web-1",
        httpx.Response(200, json={**VNF, "status": "scheduling", "host": None}),
        httpx.Response(200, json={**VNF, "status": "building"}),
        httpx.Response(200, json=VNF),
    )
    result = run(api, "vnf", "create", "web-1", "--image", "i", "--flavor", "f", "--wait", "--json")
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        "vnf web-1: scheduling",
        "vnf web-1: building on edge-1",
        "vnf web-1: running on edge-1",
    ]
    assert json.loads(result.stdout)["status"] == "running"


def test_host_add_prints_token_and_agent_command(api: FakeController) -> None:
    host = {"name": "edge-2", "state": "enabled"}
    enrollment = {"host": host, "join_token": "tok-123", "expires_at": "2024-05-01T11:00:00Z"}
    api.on("POST", "/v1/hosts", httpx.Response(201, json=enrollment))
    result = run(api, "host", "add", "edge-2")
    assert result.exit_code == 0
    assert "    tok-123" in result.stdout
    assert "edgecloud agent --join tok-123" in result.stdout
    assert api.body() == {"name": "edge-2"}


@pytest.mark.parametrize(("verb", "state"), [("enable", "enabled"), ("disable", "disabled")])
def test_host_state_commands_patch(api: FakeController, verb: str, state: str) -> None:
    api.on("PATCH", "/v1/hosts/edge-2", httpx.Response(200, json={"name": "edge-2"}))
    result = run(api, "host", verb, "edge-2")
    assert result.exit_code == 0
    assert api.body() == {"state": state}
    assert result.stdout == f"host edge-2 is now {state}\n"


def test_image_upload_streams_the_file_with_its_checksum(
    api: FakeController, tmp_path: Path
) -> None:
    data = b"QFI\xfb" + bytes(range(256)) * 5000
    path = tmp_path / "vnf.qcow2"
    path.write_bytes(data)
    api.on("PUT", "/v1/images/vnf", httpx.Response(201, json={"name": "vnf"}))
    result = run(api, "image", "upload", "vnf", str(path), "--json")
    assert result.exit_code == 0, result.stderr
    request = api.requests[-1]
    assert request.url.params["disk_format"] == "qcow2"  # guessed from the magic
    assert request.headers["content-length"] == str(len(data))
    assert request.headers["x-image-sha256"] == hashlib.sha256(data).hexdigest()
    assert request.content == data


def test_image_upload_of_a_kernel_names_its_ramdisk(api: FakeController, tmp_path: Path) -> None:
    path = tmp_path / "vmlinuz"
    path.write_bytes(b"kernel")
    api.on("PUT", "/v1/images/k", httpx.Response(201, json={"name": "k"}))
    args = ("image", "upload", "k", str(path), "--format", "kernel", "--ramdisk", "rd")
    result = run(api, *args, "--cmdline", "console=ttyS0", "--json")
    assert result.exit_code == 0, result.stderr
    params = api.requests[-1].url.params
    assert dict(params) == {"disk_format": "kernel", "ramdisk": "rd", "cmdline": "console=ttyS0"}


def test_image_upload_of_a_missing_file_is_one_sentence(api: FakeController) -> None:
    result = run(api, "image", "upload", "k", "/no/such/file")
    assert result.exit_code == 2
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert api.requests == []


def test_network_and_flavor_bodies(api: FakeController) -> None:
    api.on("POST", "/v1/networks", httpx.Response(201, json={"name": "lan"}))
    api.on("POST", "/v1/flavors", httpx.Response(201, json={"name": "small"}))
    assert run(api, "network", "create", "lan", "--vlan", "100").exit_code == 0
    assert api.body() == {"name": "lan", "kind": "vlan", "segmentation_id": 100}
    assert run(api, "flavor", "create", "small", "--vcpus", "2", "--ram", "512").exit_code == 0
    assert api.body() == {"name": "small", "vcpus": 2, "memory_mib": 512}


def test_alarm_list_all_and_event_limit(api: FakeController) -> None:
    api.on("GET", "/v1/alarms", httpx.Response(200, json=[]))
    api.on("GET", "/v1/events", httpx.Response(200, json=[]))
    assert run(api, "alarm", "list", "--all").exit_code == 0
    assert run(api, "event", "list", "--limit", "3").exit_code == 0
    assert [str(r.url.params) for r in api.requests] == ["all=true", "limit=3"]


def test_register_skips_only_modules_that_do_not_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ec_broken_commands.py").write_text("import ec_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    group = click.Group()
    register_commands(group, ["edgecloud.cli.no_such_module", "edgecloud.cli.flavors"])
    assert list(group.commands) == ["flavor"]
    with pytest.raises(ModuleNotFoundError, match="ec_no_such_dependency"):
        register_commands(group, ["ec_broken_commands"])


def test_delete_wait_polls_until_gone(api: FakeController) -> None:
    api.on("DELETE", "/v1/vnfs/web-1", httpx.Response(202, json={**VNF, "status": "deleting"}))
    gone = {"error": {"code": "not_found", "message": "no vnf named web-1"}}
    api.on(
        "GET",
        "/v1/vnfs/web-1",
        httpx.Response(200, json={**VNF, "status": "deleting"}),
        httpx.Response(404, json=gone),
    )
    result = run(api, "vnf", "delete", "web-1", "--wait")
    assert result.exit_code == 0
    assert result.stdout == "vnf web-1 deleted\n"


def test_stop_sends_the_action(api: FakeController) -> None:
    api.on("POST", "/v1/vnfs/web-1/actions", httpx.Response(202, json=VNF))
    result = run(api, "vnf", "stop", "web-1")
    assert result.exit_code == 0
    assert api.body() == {"action": "stop"}


def test_console_prints_the_output_as_is(api: FakeController) -> None:
    console = {"name": "web-1", "host": "edge-1", "output": "[    0.0] Linux\nlogin: "}
    api.on("GET", "/v1/vnfs/web-1/console", httpx.Response(200, json=console))
    result = run(api, "vnf", "console", "web-1")
    assert result.stdout == "[    0.0] Linux\nlogin: \n"


def test_a_list_of_objects_in_a_cell_shows_what_names_them() -> None:
    from edgecloud.cli.output import cell

    addresses = [{"ip_address": "10.0.0.5", "subnet": "a"}, {"ip_address": "2001:db8::5"}]
    assert cell(addresses) == "10.0.0.5, 2001:db8::5"
    assert cell([{"x": 1}, {"y": 2}]) == "2 items"


def test_host_lock_waits_and_reports_the_moves(api: FakeController) -> None:
    evacuating = {"status": "evacuating", "total": 2, "moved": [], "current": {"vnf": "a"}}
    done = {"status": "done", "total": 2, "moved": ["a", "b"], "current": None}
    api.on("POST", "/v1/hosts/edge-2/lock", httpx.Response(202, json={"maintenance": evacuating}))
    api.on(
        "GET",
        "/v1/hosts/edge-2",
        httpx.Response(200, json={"maintenance": evacuating}),
        httpx.Response(200, json={"maintenance": done}),
    )
    result = run(api, "host", "lock", "edge-2")
    assert result.exit_code == 0, result.stderr
    assert "0/2 moved, moving a" in result.stderr
    assert result.stdout == "host edge-2 is locked and empty (2 VNF(s) moved)\n"


def test_host_lock_that_stops_half_way_exits_non_zero(api: FakeController) -> None:
    failed = {"status": "failed", "total": 2, "moved": ["a"], "error": "vnf b: no valid host"}
    api.on("POST", "/v1/hosts/edge-2/lock", httpx.Response(202, json={"maintenance": failed}))
    api.on("GET", "/v1/hosts/edge-2", httpx.Response(200, json={"maintenance": failed}))
    result = run(api, "host", "lock", "edge-2")
    assert result.exit_code != 0
    assert "locked but not empty: vnf b: no valid host" in result.stderr
