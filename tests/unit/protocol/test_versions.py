"""Protocol versions: what a session speaks is negotiated at hello (protocol/messages.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from edgecloud import __version__
from edgecloud.errors import ProtocolError
from edgecloud.protocol import messages


def test_the_release_is_the_package_version() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == __version__


def test_a_hello_offering_versions_gets_the_newest_both_speak() -> None:
    hello = messages.make("hello", protocols=[1, 2, 3, 7])
    assert messages.negotiate(hello) == messages.PROTOCOL_VERSION == 2
    assert messages.negotiate(messages.make("hello", protocols=[1])) == 1


def test_a_hello_of_release_0_1_0_speaks_its_frame_version() -> None:
    assert messages.negotiate({"v": 1, "t": "hello", "agent_version": "0.1.0"}) == 1


def test_no_version_in_common_is_refused_naming_both_sides() -> None:
    with pytest.raises(ProtocolError, match=r"the agent speaks \[9\].*speaks \[1, 2\]"):
        messages.negotiate(messages.make("hello", protocols=[9]))
    with pytest.raises(ProtocolError, match=r"speaks \[2, True\]"):  # no strings, no bools
        messages.negotiate(messages.make("hello", protocols=["2", True]))
    with pytest.raises(ProtocolError, match=r"speaks \[10, 11, 12, 13, 14, 15, 16, 17, \.\.\.\]"):
        messages.negotiate(messages.make("hello", protocols=list(range(10, 100))))


def test_messages_are_framed_at_the_oldest_version_until_a_session_frames_them() -> None:
    message = messages.make("retry", retry_after=1)
    assert message["v"] == messages.OLDEST_VERSION == 1  # what an agent of 0.1.0 reads
    assert messages.framed(message, 2) == {"v": 2, "t": "retry", "retry_after": 1}
    assert message["v"] == 1  # not changed in place


def test_a_welcome_without_protocol_is_version_1_and_an_unknown_one_is_refused() -> None:
    assert messages.welcomed(messages.make("welcome")) == 1
    assert messages.welcomed(messages.make("welcome", protocol=2)) == 2
    with pytest.raises(ProtocolError, match="does not speak"):
        messages.welcomed(messages.make("welcome", protocol=3))


def test_optional_messages_go_to_version_2_sessions_and_to_version_1_ones_that_asked() -> None:
    asked = {"steers": True, "follows": False}
    assert messages.speaks(2, "controllers", {})
    assert messages.speaks(1, "steer", asked)
    assert not messages.speaks(1, "controllers", asked)
    assert not messages.speaks(1, "steer_chain", asked)
