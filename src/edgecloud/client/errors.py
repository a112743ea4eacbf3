"""The client's errors, and the boundary that maps httpx failures and HTTP answers to them.

    edgecloud.errors.ClientError        any failure of the client; the message is one sentence
    ├── ApiError                        the controller answered 4xx/5xx (.status, .code, .field)
    ├── ControllerUnreachable           no connection, or no answer in time
    ├── TlsError                        the TLS handshake failed (e.g. certificate not trusted)
    └── WaitTimedOut                    a wait_for_* deadline passed

client/api.py raises these; cli/main.py prints their message as "error: <sentence>".
The REST error body they are built from is {"error": {"code", "message", "field"}}
(see api/schemas.py ErrorOut, which this module does not import).
"""

from __future__ import annotations

import re
import ssl
from typing import Any, TypeVar

import httpx

from edgecloud.errors import ClientError

E = TypeVar("E", bound=BaseException)

UP_HINT = "is the site up? start it with `edgecloud up`"


class ApiError(ClientError):
    """The controller refused or failed a request; `status` is the HTTP status."""

    def __init__(
        self, message: str, status: int, code: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field


class ControllerUnreachable(ClientError):
    """The controller could not be reached (refused, unresolvable, timed out)."""


class TlsError(ClientError):
    """The TLS handshake failed, typically because the certificate is not trusted."""


class WaitTimedOut(ClientError):
    """A wait for some state did not end before its deadline."""


def api_error(response: httpx.Response) -> ApiError:
    """Turn a 4xx/5xx response into an ApiError carrying the server's own sentence."""
    body = _error_body(response)
    message = body.get("message")
    if not isinstance(message, str) or not message:
        message = f"the controller answered HTTP {response.status_code} {response.reason_phrase}"
    field = body.get("field") if isinstance(body.get("field"), str) else None
    code = body.get("code") if isinstance(body.get("code"), str) else None
    text = f"{field}: {message}" if field and not message.startswith(f"{field}:") else message
    return ApiError(text, status=response.status_code, code=code, field=field)


def transport_error(exc: httpx.TransportError, url: str, ca_cert: str) -> ClientError:
    """Turn a connection-level failure into one sentence naming the URL (and CA when TLS)."""
    tls = _find_cause(exc, ssl.SSLError)
    if isinstance(tls, ssl.SSLCertVerificationError):
        detail = (getattr(tls, "verify_message", None) or _reason(tls)).rstrip(".")
        return TlsError(
            f"the certificate of the controller at {url} could not be verified against the "
            f"site CA {ca_cert or '(system trust store)'} ({detail})"
        )
    if tls is not None:
        return TlsError(f"the TLS handshake with the controller at {url} failed ({_reason(tls)})")
    if isinstance(exc, httpx.TimeoutException):
        return ControllerUnreachable(
            f"cannot reach the edgecloud controller at {url} (timed out): {UP_HINT}"
        )
    return ControllerUnreachable(
        f"cannot reach the edgecloud controller at {url} ({_reason(exc)}): {UP_HINT}"
    )


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else {}


def _find_cause(exc: BaseException, kind: type[E]) -> E | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _reason(exc: BaseException) -> str:
    os_error = _find_cause(exc, OSError)
    text = (os_error.strerror if os_error and os_error.strerror else None) or str(exc)
    text = re.sub(r"^\[\w+ -?\d+\]\s*", "", text) or type(exc).__name__
    return (text[:1].lower() + text[1:]).rstrip(".")
