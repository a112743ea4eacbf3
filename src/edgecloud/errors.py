"""The one exception hierarchy of edgecloud.

    EdgecloudError
    ├── InvalidInput          (API 422/400, CLI exit 2)  bad input, names the field
    │   └── TemplateError     (API 422)                  a stack template is invalid (names line/path)
    ├── NotFound              (API 404)                  a named object does not exist
    ├── Conflict              (API 409)                  the object exists / is in use / wrong state
    ├── Unauthorized          (API 401)                  missing or bad token
    ├── Forbidden             (API 403)                  the token's role or scope does not allow it
    ├── InsufficientStorage   (API 507)                  no room for an upload
    ├── NoValidHost           (instance fault)           the scheduler found no place
    ├── EnrollmentError       (agent/gateway)            bad, used or expired join token, bad CSR
    ├── ProtocolError         (agent/gateway)            malformed or unsupported message
    ├── DriverError           (instance fault)           a hypervisor or vSwitch call failed
    ├── ClientError           (CLI)                      the client could not do what was asked
    └── Deposed               (controller)               a leader-only write by a controller
                                                         that no longer leads (store/leadership.py)

Boundaries map these: api/errors.py to HTTP responses, cli/ to one sentence and an exit
code, the agent to nacks and faults.
"""


class EdgecloudError(Exception):
    """Base of every error edgecloud raises on purpose."""


class InvalidInput(EdgecloudError):
    """Input a caller can fix; the message names the field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TemplateError(InvalidInput):
    """A stack template or its parameters are invalid; ``field`` is the template path
    (``resources.router.properties.flavor``) and the message names the line when known."""


class NotFound(EdgecloudError):
    """A named object does not exist."""


class Conflict(EdgecloudError):
    """The request conflicts with the current state (exists, in use, wrong state)."""


class Unauthorized(EdgecloudError):
    """Missing or invalid credentials."""


class Forbidden(EdgecloudError):
    """Valid credentials whose role or customer scope does not allow the request."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InsufficientStorage(EdgecloudError):
    """The controller has no room to store what was sent."""


class NoValidHost(EdgecloudError):
    """The scheduler found no host that passes every filter."""


class EnrollmentError(EdgecloudError):
    """A join token or certificate request was refused."""


class ProtocolError(EdgecloudError):
    """A message on the agent channel was malformed or of an unsupported version."""


class NotConnected(ProtocolError):
    """A host's agent has no session with the controllers now (it may be reconnecting)."""


class Untrusted(EdgecloudError):
    """A signed software package whose signature, signer or checksum does not hold."""


class DriverError(EdgecloudError):
    """A hypervisor or vSwitch operation failed."""


class ClientError(EdgecloudError):
    """The client SDK could not complete a request (connection, HTTP error, config)."""


class Deposed(EdgecloudError):
    """A leader-only write from a controller whose leadership epoch is over (or that does not
    lead): refused, so a deposed leader's late write never lands (store/leadership.py)."""
