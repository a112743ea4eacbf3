"""A client configured with several controllers: a request that cannot connect goes to the
next at once, the one that answered is asked first afterwards, and when none answers the
client backs off, tries a bounded number of rounds and says which it tried."""

from __future__ import annotations

import httpx
import pytest

from edgecloud.client import Client, ClientConfig, ControllerUnreachable
from edgecloud.client import api as client_api

CONFIG = ClientConfig(
    url="https://a.test:7443", token="t", ca_cert="", urls=("https://b.test:7443",)
)


def run(down: set[str], asked: list[str], sleeps: list[float]) -> Client:
    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.host)
        if request.url.host in down:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json=[{"name": "n1"}])

    return Client(CONFIG, transport=httpx.MockTransport(handler), sleep=sleeps.append)


def test_a_refused_request_goes_to_the_next_controller_which_is_then_asked_first() -> None:
    asked: list[str] = []
    down = {"a.test"}
    with run(down, asked, []) as client:
        assert client.list_hosts() == [{"name": "n1"}]
        assert asked == ["a.test", "b.test"]
        client.add_host("n2")  # a POST too: nothing was sent to the refusing one
        assert asked[2:] == ["b.test"]
        down.clear()
        client.list_hosts()
        assert asked[3:] == ["b.test"]  # stays with the one that answered


def test_when_none_answers_it_backs_off_for_a_bounded_number_of_rounds() -> None:
    asked: list[str] = []
    sleeps: list[float] = []
    with (
        run({"a.test", "b.test"}, asked, sleeps) as client,
        pytest.raises(ControllerUnreachable, match=r"a\.test:7443, https://b\.test:7443"),
    ):
        client.list_hosts()
    assert len(asked) == 2 * client_api.FOLLOW_ROUNDS
    assert len(sleeps) == client_api.FOLLOW_ROUNDS - 1
    assert all(0 <= s <= client_api.FOLLOW_BACKOFF * 2**r for r, s in enumerate(sleeps, 1))


def test_a_read_that_timed_out_after_sending_is_not_sent_again() -> None:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.host)
        raise httpx.ReadTimeout("slow", request=request)

    with (
        Client(CONFIG, transport=httpx.MockTransport(handler), sleep=lambda s: None) as client,
        pytest.raises(ControllerUnreachable, match="timed out"),
    ):
        client.add_host("n2")
    assert asked == ["a.test"]
