"""Where the client finds its controller: the config file (URL, bearer token, site CA).

`edgecloud up` (cli/site.py) writes it with `save_config`; every other command reads it
with `load_config` and hands the result to `client.api.Client`. The file is JSON:

    {"url": "https://127.0.0.1:7443", "token": "...", "ca_cert": "/path/to/ca.pem",
     "urls": ["https://10.0.0.2:7443"]}

``urls`` (optional): the API of the site's other controllers (docs/operations.md, two
controllers); the client tries the next when one does not answer (client/api.py).

A relative `ca_cert` is taken relative to the config file's directory. Every failure is a
ClientError (edgecloud.errors) whose message is one sentence the CLI prints as is.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgecloud import files
from edgecloud.errors import ClientError

FIELDS = ("url", "token", "ca_cert")


@dataclass(frozen=True)
class ClientConfig:
    """How to reach one site's controller."""

    url: str
    token: str
    ca_cert: str
    urls: tuple[str, ...] = ()  # the site's other controllers' API URLs

    @property
    def every_url(self) -> tuple[str, ...]:
        """``url`` then the others, each once."""
        return tuple(dict.fromkeys((self.url, *self.urls)))


def for_site(info: dict[str, Any], token: str) -> ClientConfig:
    """How a client reaches an all-in-one site from its STATE/site.json (``info``): its first
    controller's API, and on a redundant site the other's too (``urls``: the client fails
    over by itself)."""
    others = tuple(u for u in info.get("api_urls") or () if u != info["api_url"])
    return ClientConfig(url=info["api_url"], token=token, ca_cert=info["ca_cert"], urls=others)


def default_config_path() -> Path:
    """$EDGECLOUD_CONFIG, else $XDG_CONFIG_HOME/edgecloud/config.json (~/.config by default)."""
    explicit = os.environ.get("EDGECLOUD_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "edgecloud" / "config.json"


def load_config(path: Path | None = None) -> ClientConfig:
    """Read and check the config at `path` (default: `default_config_path()`)."""
    path = path or default_config_path()
    data = _parse(path, _read(path))
    ca_cert = data["ca_cert"]
    if ca_cert and not Path(ca_cert).expanduser().is_absolute():
        ca_cert = str(path.absolute().parent / ca_cert)
    return ClientConfig(
        url=data["url"], token=data["token"], ca_cert=ca_cert, urls=_urls(path, data)
    )


def save_config(config: ClientConfig, path: Path | None = None) -> Path:
    """Write `config` atomically with mode 0600, creating parent folders; return the path."""
    path = path or default_config_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = asdict(config)
        data["urls"] = list(config.urls)
        if not config.urls:
            del data["urls"]
        files.write_atomic(path, json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        raise ClientError(f"cannot write the edgecloud config at {path}: {exc.strerror}") from exc
    return path


def _urls(path: Path, data: dict[str, Any]) -> tuple[str, ...]:
    urls = data.get("urls", [])
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise ClientError(f"the edgecloud config at {path} has urls that is not a list of text")
    if not all(u.startswith(("https://", "http://")) for u in urls):
        raise ClientError(
            f"the edgecloud config at {path} has a url in urls that is not http(s)://"
        )
    return tuple(urls)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClientError(
            f"no edgecloud config at {path}: start a site with `edgecloud up` or pass --config"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ClientError(f"cannot read the edgecloud config at {path}: {reason}") from exc


def _parse(path: Path, text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClientError(
            f"the edgecloud config at {path} is not valid JSON ({exc.msg} at line {exc.lineno})"
        ) from None
    if not isinstance(data, dict):
        raise ClientError(f"the edgecloud config at {path} must be a JSON object")
    bad = [key for key in FIELDS if not isinstance(data.get(key), str)]
    if bad:
        raise ClientError(f"the edgecloud config at {path} lacks a text value for {', '.join(bad)}")
    if not data["url"].startswith(("https://", "http://")):
        raise ClientError(f"the edgecloud config at {path} has a url that is not http(s)://")
    return data
