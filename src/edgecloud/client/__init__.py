"""edgecloud.client: the Python SDK for the REST API, used by the CLI (edgecloud.cli).

    config.py   ClientConfig and the config file (load_config, save_config)
    api.py      Client: one method per REST operation, plain JSON back
    errors.py   ApiError and friends (all ClientError), and the httpx -> error mapping

It speaks the JSON of api/schemas.py without importing the server side. The names below are
loaded when first used, so a process that only reads or writes the config file (the site's
supervisor) does not load httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgecloud.client.api import Client
    from edgecloud.client.config import (
        ClientConfig,
        default_config_path,
        load_config,
        save_config,
    )
    from edgecloud.client.errors import ApiError, ControllerUnreachable, TlsError, WaitTimedOut

_HOMES = {
    "Client": "api",
    "ClientConfig": "config",
    "default_config_path": "config",
    "load_config": "config",
    "save_config": "config",
    "ApiError": "errors",
    "ControllerUnreachable": "errors",
    "TlsError": "errors",
    "WaitTimedOut": "errors",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "ApiError",
    "Client",
    "ClientConfig",
    "ControllerUnreachable",
    "TlsError",
    "WaitTimedOut",
    "default_config_path",
    "load_config",
    "save_config",
]
