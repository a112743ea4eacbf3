"""`edgecloud status` says which controller leads and which are up (GET /v1/controllers), and
says in one line when no controller answers; `controller --site-secret-file` refuses a short
secret in one sentence."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from click.testing import CliRunner, Result

from edgecloud.cli.context import CliState
from edgecloud.cli.main import main
from edgecloud.client import Client, ClientConfig

A = {
    "id": "host-a:11/aaaaaa",
    "api_url": "https://10.0.0.1:7443",
    "gateway": "10.0.0.1:7444",
    "up": True,
    "leads": True,
    "this": False,
    "seen_at": "2026-11-30T23:00:00Z",
    "started_at": "2026-11-30T22:00:00Z",
}
B = {**A, "id": "host-b:22/bbbbbb", "api_url": "https://10.0.0.2:7443", "gateway": "10.0.0.2:7444"}
FOUND = {
    "leader": {
        "id": A["id"],
        "epoch": 7,
        "since": "2026-11-30T22:00:01Z",
        "api_url": A["api_url"],
        "gateway": A["gateway"],
        "up": True,
    },
    "controllers": [A, {**B, "up": False, "leads": False, "this": True}],
}


def status(tmp_path: Path, handler: httpx.MockTransport, *extra: str) -> Result:
    def factory(config_path: Path | None) -> Client:
        config = ClientConfig(url="https://ctl.test", token="t", ca_cert="")
        return Client(config, transport=handler, sleep=lambda s: None)

    args = ["status", "--state-dir", str(tmp_path), *extra]
    return CliRunner().invoke(main, args, obj=CliState(client_factory=factory))


def test_status_names_the_leader_its_epoch_and_each_controller(tmp_path: Path) -> None:
    answer = httpx.MockTransport(lambda r: httpx.Response(200, json=FOUND))
    result = status(tmp_path, answer)
    assert result.exit_code == 0, result.output
    assert "leader: host-a:11/aaaaaa  epoch 7  API https://10.0.0.1:7443" in result.output
    assert "controller host-a:11/aaaaaa  up  leads" in result.output
    assert "controller host-b:22/bbbbbb  down  follows" in result.output
    as_json = json.loads(status(tmp_path, answer, "--json").output)
    assert as_json["controllers"] == FOUND


def test_status_says_when_no_controller_answers(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    result = status(tmp_path, httpx.MockTransport(refuse))
    assert result.exit_code == 0, result.output
    assert "controllers: unknown (cannot reach the edgecloud controller at" in result.output
    assert "Traceback" not in result.output


def test_a_short_site_secret_is_one_sentence(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("short\n")
    args = ["controller", "--state-dir", str(tmp_path / "s"), "--site-secret-file", str(secret)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert "the site secret must have at least 16 characters" in result.output
    assert "Traceback" not in result.output
