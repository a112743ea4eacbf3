"""edgecloud.client: the Python SDK for the REST API, used by the CLI (edgecloud.cli).

    config.py   ClientConfig and the config file (load_config, save_config)
    api.py      Client: one method per REST operation, plain JSON back
    errors.py   ApiError and friends (all ClientError), and the httpx -> error mapping

It speaks the JSON of api/schemas.py without importing the server side.
"""

from edgecloud.client.api import Client
from edgecloud.client.config import ClientConfig, default_config_path, load_config, save_config
from edgecloud.client.errors import ApiError, ControllerUnreachable, TlsError, WaitTimedOut

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
