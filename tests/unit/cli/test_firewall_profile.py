"""`edgecloud firewall-profile`: where the controller listens from its own record
(controller.json), the nodes' addresses from the API or --node-address; one sentence and a
non-zero exit when there is no running controller to read."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from click.testing import CliRunner, Result

from edgecloud.cli.context import CliState
from edgecloud.cli.main import main
from edgecloud.client import Client, ClientConfig

HOSTS = [
    {"name": "n1", "address": "10.0.0.11"},
    {"name": "n2", "address": "10.0.0.12"},
    {"name": "n3", "address": None},
]


def _run(*args: str) -> tuple[Result, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        assert request.url.path == "/v1/hosts"
        return httpx.Response(200, json=HOSTS)

    def factory(_: Path | None) -> Client:
        config = ClientConfig(url="https://ctl.test", token="t", ca_cert="")
        return Client(config, transport=httpx.MockTransport(api), sleep=lambda s: None)

    result = CliRunner().invoke(main, list(args), obj=CliState(client_factory=factory))
    return result, seen


def _site(tmp_path: Path) -> Path:
    """An `edgecloud up` state folder whose controller listens as a real one records it."""
    (tmp_path / "controller").mkdir(parents=True)
    record = {"api_url": "https://10.9.0.1:7443", "gateway": "10.0.0.1:7444", "pid": 1}
    (tmp_path / "controller" / "controller.json").write_text(json.dumps(record))
    return tmp_path


def test_the_profile_comes_from_the_controller_record_and_the_hosts(tmp_path: Path) -> None:
    result, seen = _run("firewall-profile", "--state-dir", str(_site(tmp_path)))
    assert result.exit_code == 0, result.output
    assert len(seen) == 1
    lines = result.output.splitlines()
    assert (
        "nft add rule inet edgecloud output ip daddr 10.0.0.1 tcp dport 7444 ct state new accept"
        in lines
    )
    assert any("saddr { 10.0.0.11, 10.0.0.12 }" in line and "16514" in line for line in lines)
    assert (
        "nft add rule inet edgecloud input ip daddr 10.9.0.1 tcp dport 7443 ct state new accept"
        in lines
    )


def test_node_addresses_given_are_used_without_asking_the_api(tmp_path: Path) -> None:
    result, seen = _run(
        "firewall-profile", "--state-dir", str(_site(tmp_path / "s")), "--format", "iptables",
        "--node-address", "10.1.0.2", "--node-address", "10.1.0.1", "--api-from", "10.9.0.0/24",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert seen == []
    assert any(
        "-s 10.1.0.1,10.1.0.2 -d 10.1.0.1,10.1.0.2" in line for line in result.output.splitlines()
    )
    assert (
        "iptables -A INPUT -p tcp -s 10.9.0.0/24 -d 10.9.0.1 -m multiport --dports 7443 -m conntrack --ctstate NEW -j ACCEPT"
        in result.output
    )


def test_no_running_controller_is_one_sentence_and_exit_1(tmp_path: Path) -> None:
    result, _ = _run("firewall-profile", "--state-dir", str(tmp_path))
    assert result.exit_code == 1
    assert result.output.startswith("error: no running controller's record")
    assert "Traceback" not in result.output
