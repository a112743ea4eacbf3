"""The welcome: the controller's answer to a hello, as a typed model both sides use.

The gateway builds it (gateway/gateway.py ``_welcome``) and the agent reads it (agent/connection.py
``hello``, agent/runner.py). Every field has the default an older controller's welcome implies
by leaving it out: 0.1.0 sent none of ``protocol``, ``release`` and ``renew``; a site with one
controller sends no ``controllers``; a site whose agents need not fence sends no
``fence_after``. Unknown fields are kept (a newer controller's additions are ignored), and a
field of the wrong type refuses the session with a ProtocolError naming it. The negotiated
protocol is checked against what this release speaks (protocol/messages.py ``welcomed``).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from edgecloud.protocol import messages
from edgecloud.protocol.schemas import parsed

Address = Annotated[str, StringConstraints(max_length=255)]


class Welcome(BaseModel):
    """What the controller tells a node that said hello."""

    model_config = ConfigDict(extra="allow")

    in_sync: bool = False  # the node applied the current desired version: nothing is pushed
    desired_version: Annotated[int, Field(ge=0)] = 0
    heartbeat_interval: Annotated[float, Field(gt=0)] = 10.0
    protocol: int = 1  # negotiated (0.1.0's welcome said none: 1)
    release: Annotated[str, StringConstraints(max_length=64)] = "0.1.0"
    renew: bool = False  # this controller signs certificate renewals over the session
    controllers: Annotated[list[Address], Field(max_length=64)] | None = None  # every gateway
    fence_after: Annotated[float, Field(gt=0)] | None = None  # silence before a node fences

    def frame(self) -> dict[str, Any]:
        """The welcome message, framed at the session's protocol version."""
        return messages.make("welcome", **self.model_dump(mode="json", exclude_none=True))

    @classmethod
    def read(cls, message: dict[str, Any]) -> Welcome:
        """A welcome message as the model; ProtocolError naming a field that does not fit or
        a protocol version this agent does not speak."""
        messages.welcomed(message)
        fields = {k: v for k, v in message.items() if k not in ("v", "t")}
        return parsed(cls, fields, "the controller's welcome")
