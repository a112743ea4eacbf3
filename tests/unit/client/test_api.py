"""Client SDK against httpx.MockTransport: requests it sends and how failures are mapped."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgecloud.client import (
    ApiError,
    Client,
    ClientConfig,
    ControllerUnreachable,
    TlsError,
    WaitTimedOut,
)
from edgecloud.errors import ClientError

CONFIG = ClientConfig(url="https://ctl.test:7443", token="s3cret", ca_cert="/etc/site/ca.pem")
Handler = Callable[[httpx.Request], httpx.Response]


def make_client(handler: Handler, clock: Callable[[], float] | None = None) -> Client:
    extra: dict[str, Any] = {"clock": clock} if clock else {}
    return Client(CONFIG, transport=httpx.MockTransport(handler), sleep=lambda s: None, **extra)


def error(status: int, message: str, field: str | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": "x", "message": message, "field": field}})


def failing(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


class Recorder:
    """A handler answering from a list of responses and keeping every request."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def test_404_becomes_api_error_with_the_server_sentence() -> None:
    with (
        make_client(lambda r: error(404, "no vnf named web-1")) as client,
        pytest.raises(ApiError) as caught,
    ):
        client.get_vnf("web-1")
    assert str(caught.value) == "no vnf named web-1"
    assert caught.value.status == 404
    assert caught.value.code == "x"


def test_field_prefixes_the_message() -> None:
    recorder = Recorder(error(422, "must be one of virtio, e1000", "nics[1].model"))
    with make_client(recorder) as client, pytest.raises(ApiError) as caught:
        client.create_vnf("web-1", "img", "small", [{"network": "lan"}])
    assert str(caught.value) == "nics[1].model: must be one of virtio, e1000"
    assert (caught.value.status, caught.value.field) == (422, "nics[1].model")


def test_error_without_json_body_names_the_status() -> None:
    with (
        make_client(lambda r: httpx.Response(502, text="<html>")) as client,
        pytest.raises(ApiError, match="answered HTTP 502 Bad Gateway"),
    ):
        client.list_hosts()


def test_connection_refused_says_cannot_reach() -> None:
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    with make_client(failing(refused)) as client, pytest.raises(ControllerUnreachable) as caught:
        client.list_vnfs()
    assert str(caught.value) == (
        "cannot reach the edgecloud controller at https://ctl.test:7443 (connection refused): "
        "is the site up? start it with `edgecloud up`"
    )


def test_timeout_says_cannot_reach() -> None:
    with (
        make_client(failing(httpx.ReadTimeout("timed out"))) as client,
        pytest.raises(ControllerUnreachable, match=r"cannot reach .* \(timed out\)"),
    ):
        client.health()


def test_untrusted_certificate_names_the_ca() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        try:
            raise ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed")
        except ssl.SSLError as exc:
            raise httpx.ConnectError("handshake failed") from exc

    with make_client(handler) as client, pytest.raises(TlsError) as caught:
        client.list_hosts()
    assert "could not be verified against the site CA /etc/site/ca.pem" in str(caught.value)


def test_unreadable_ca_file_is_one_sentence(tmp_path: Path) -> None:
    config = ClientConfig(url="https://ctl.test", token="t", ca_cert=str(tmp_path / "no.pem"))
    with pytest.raises(ClientError, match=r"cannot load the site CA certificate .*no\.pem"):
        Client(config)


def test_requests_carry_the_token_and_quote_names() -> None:
    recorder = Recorder(httpx.Response(200, json={"name": "a b"}))
    with make_client(recorder) as client:
        client.get_host("a b")
    request = recorder.requests[0]
    assert request.headers["Authorization"] == "Bearer s3cret"
    assert request.url.raw_path == b"/v1/hosts/a%20b"


def test_create_vnf_keeps_nic_order_and_omits_unset_fields() -> None:
    recorder = Recorder(httpx.Response(201, json={"name": "web-1"}))
    nics = [{"network": "wan", "model": "e1000"}, {"network": "lan"}]
    with make_client(recorder) as client:
        client.create_vnf("web-1", "img", "small", nics)
    assert recorder.body() == {"name": "web-1", "image": "img", "flavor": "small", "nics": nics}


def test_delete_with_204_returns_none() -> None:
    recorder = Recorder(httpx.Response(204))
    with make_client(recorder) as client:
        client.delete_network("lan")
    assert recorder.requests[0].method == "DELETE"


def test_alarm_and_event_queries() -> None:
    recorder = Recorder(httpx.Response(200, json=[]))
    with make_client(recorder) as client:
        client.list_alarms(all=True)
        client.list_alarms()
        client.list_events(limit=5)
    assert [str(r.url.params) for r in recorder.requests] == ["all=true", "all=false", "limit=5"]


def vnf(status: str, host: str | None = None) -> httpx.Response:
    return httpx.Response(200, json={"name": "web-1", "status": status, "host": host})


def test_wait_for_vnf_polls_until_a_wanted_status() -> None:
    recorder = Recorder(vnf("scheduling"), vnf("building", "edge-1"), vnf("running", "edge-1"))
    seen: list[str] = []
    with make_client(recorder) as client:
        final = client.wait_for_vnf(
            "web-1", {"running", "error"}, 60, lambda v: seen.append(v["status"])
        )
    assert final["status"] == "running"
    assert seen == ["scheduling", "building", "running"]


def test_wait_for_vnf_gives_up_at_the_deadline() -> None:
    now = iter(range(0, 1000, 10))
    with (
        make_client(Recorder(vnf("building")), clock=lambda: float(next(now))) as client,
        pytest.raises(WaitTimedOut, match="vnf web-1 is still building after 30 s"),
    ):
        client.wait_for_vnf("web-1", {"running"}, 30)


def test_wait_for_vnf_gone_ends_on_404() -> None:
    recorder = Recorder(vnf("deleting"), error(404, "no vnf named web-1"))
    with make_client(recorder) as client:
        client.wait_for_vnf_gone("web-1", 60)
    assert len(recorder.requests) == 2
