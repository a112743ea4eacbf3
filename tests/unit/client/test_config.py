"""The client config file: where it is looked for, and one-sentence errors when it is bad."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from edgecloud.client import ClientConfig, default_config_path, load_config, save_config
from edgecloud.errors import ClientError


def test_default_path_prefers_edgecloud_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGECLOUD_CONFIG", "/srv/site.json")
    assert default_config_path() == Path("/srv/site.json")


def test_default_path_follows_xdg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGECLOUD_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", "/xdg")
    assert default_config_path() == Path("/xdg/edgecloud/config.json")


def test_default_path_falls_back_to_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGECLOUD_CONFIG", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", "/home/op")
    assert default_config_path() == Path("/home/op/.config/edgecloud/config.json")


def test_save_then_load_round_trips_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "config.json"
    config = ClientConfig(url="https://127.0.0.1:7443", token="t", ca_cert="/ca.pem")
    assert save_config(config, path) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_config(path) == config
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]


def test_relative_ca_is_next_to_the_config(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    save_config(ClientConfig(url="https://h", token="t", ca_cert="ca.pem"), path)
    assert load_config(path).ca_cert == str(tmp_path / "ca.pem")


def test_missing_config_is_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "none.json"
    with pytest.raises(ClientError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"no edgecloud config at {path}: start a site with `edgecloud up` or pass --config"
    )


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("{not json", "is not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"url": "https://h", "token": 1}', "lacks a text value for token, ca_cert"),
        ('{"url": "ftp://h", "token": "t", "ca_cert": ""}', "url that is not http(s)://"),
    ],
)
def test_malformed_config_names_the_problem(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ClientError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"the edgecloud config at {path}")
    assert complaint in str(caught.value)


def test_the_other_controllers_urls_round_trip_and_are_optional(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    several = ClientConfig("https://a:7443", "t", "/ca.pem", urls=("https://b:7443",))
    save_config(several, path)
    assert load_config(path) == several
    assert several.every_url == ("https://a:7443", "https://b:7443")
    save_config(ClientConfig("https://a:7443", "t", "/ca.pem"), path)
    assert "urls" not in path.read_text()
    assert load_config(path).urls == ()


@pytest.mark.parametrize(
    ("urls", "reason"), [('"https://b"', "not a list"), ('["ftp://b"]', "not http")]
)
def test_bad_urls_are_one_sentence(tmp_path: Path, urls: str, reason: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(f'{{"url": "https://a", "token": "t", "ca_cert": "", "urls": {urls}}}')
    with pytest.raises(ClientError, match=reason):
        load_config(path)
