"""What the engine computes itself: random strings, cloud-config and MIME user data, key pairs.

services/stacks.py calls ``computed_attributes`` for resources whose role is ``computed`` in
templates/resource_types.py (they make no site object), ``server_user_data`` to render a
server's user_data, and ``keypair_attributes`` for an OS::Nova::KeyPair. ``configs`` maps a
config resource's reference (what ``get_resource`` gave) to its text, so a user_data or a
MIME part may name a config resource, as in Heat. Results are size-capped by
templates/budget.py. Pure, except that random values come from ``secrets``.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from edgecloud.errors import TemplateError
from edgecloud.templates.budget import capped
from edgecloud.templates.resource_types import (
    CLOUD_CONFIG,
    MULTIPART_MIME,
    NONE,
    RANDOM_STRING,
    SERVER_GROUP,
    SOFTWARE_CONFIG,
)

CLASSES: Mapping[str, str] = {
    "lettersdigits": string.ascii_letters + string.digits,
    "letters": string.ascii_letters,
    "lowercase": string.ascii_lowercase,
    "uppercase": string.ascii_uppercase,
    "digits": string.digits,
    "hexdigits": string.digits + "abcdef",
    "octdigits": string.octdigits,
}
CONFIG_TYPES = (CLOUD_CONFIG, SOFTWARE_CONFIG, MULTIPART_MIME)


def computed_attributes(
    type_name: str,
    name: str,
    props: Mapping[str, Any],
    configs: Mapping[str, str],
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The attributes of a computed resource. ``previous``: its attributes before a stack
    update (a random string keeps its value unless its properties changed)."""
    if type_name == RANDOM_STRING:
        if previous and "value" in previous:
            return dict(previous)
        return {"value": random_string(props)}
    if type_name == CLOUD_CONFIG:
        return {"config": cloud_config(props.get("cloud_config") or {})}
    if type_name == SOFTWARE_CONFIG:
        return {"config": str(props.get("config") or "")}
    if type_name == MULTIPART_MIME:
        return {"config": multipart(props.get("parts") or [], configs)}
    if type_name == SERVER_GROUP:
        return {"name": props.get("name") or name}
    if type_name == NONE:
        return {}
    raise TemplateError(f"{type_name} is not computed by the template engine")


def random_string(props: Mapping[str, Any]) -> str:
    """A random string as OS::Heat::RandomString makes it: ``length`` characters, at least
    ``min`` of each character class / sequence, the rest from all of them."""
    length = int(props.get("length", 32))
    classes = props.get("character_classes") or []
    sequences = props.get("character_sequences") or []
    pools = [(CLASSES[c.get("class", "lettersdigits")], int(c.get("min", 1))) for c in classes]
    pools += [(str(s["sequence"]), int(s.get("min", 1))) for s in sequences if s.get("sequence")]
    if not pools:
        pools = [(CLASSES[props.get("sequence") or "lettersdigits"], 0)]
    required = sum(minimum for _, minimum in pools)
    if required > length:
        raise TemplateError(
            f"length {length} is less than the {required} characters the minimums ask for",
            "length",
        )
    chars = [secrets.choice(pool) for pool, minimum in pools for _ in range(minimum)]
    everything = "".join(pool for pool, _ in pools)
    chars += [secrets.choice(everything) for _ in range(length - len(chars))]
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)


def cloud_config(document: Mapping[str, Any]) -> str:
    """``#cloud-config`` followed by the map as YAML."""
    text = "#cloud-config\n" + yaml.safe_dump(dict(document), default_flow_style=False)
    return str(capped(text, "OS::Heat::CloudConfig"))


def multipart(parts: list[Mapping[str, Any]], configs: Mapping[str, str]) -> str:
    """A MIME multipart document of the parts; a part's ``config`` may name a config resource."""
    message = MIMEMultipart()
    for part in parts:
        text = configs.get(str(part["config"]), str(part["config"]))
        if part.get("type") == "multipart":
            message.attach(_embedded(text))
            continue
        subtype = part.get("subtype") or _subtype(text)
        item = MIMEText(text, subtype, "utf-8" if not text.isascii() else "us-ascii")
        if part.get("filename"):
            item.add_header("Content-Disposition", "attachment", filename=str(part["filename"]))
        message.attach(item)
    return str(capped(message.as_string(), "OS::Heat::MultipartMime"))


def _embedded(text: str) -> MIMEText:
    item = MIMEText(text, "mixed")
    item.replace_header("Content-Type", "multipart/mixed")
    return item


def _subtype(text: str) -> str:
    """cloud-init's part type from the text's first line, as Heat's MultipartMime guesses."""
    if text.startswith("#cloud-config"):
        return "cloud-config"
    if text.startswith("#!"):
        return "x-shellscript"
    if text.startswith("#include"):
        return "x-include-url"
    if text.startswith("#cloud-boothook"):
        return "cloud-boothook"
    return "plain"


def server_user_data(props: Mapping[str, Any], configs: Mapping[str, str]) -> str | None:
    """A server's rendered user_data: its text, or the text of the config resource it names.

    ``RAW`` and ``SOFTWARE_CONFIG`` (and no format: edgecloud treats it as RAW, see
    docs/templates.md) give the text as it is; ``HEAT_CFNTOOLS`` is refused.
    """
    user_data = props.get("user_data")
    if user_data is None:
        return None
    if props.get("user_data_format") == "HEAT_CFNTOOLS":
        raise TemplateError(
            "user_data_format HEAT_CFNTOOLS is refused: it needs Heat's cfn-tools agent and "
            "metadata server; use RAW or SOFTWARE_CONFIG",
            "user_data_format",
        )
    text = configs.get(str(user_data), str(user_data))
    return str(capped(text, "user_data"))


def keypair_attributes(props: Mapping[str, Any]) -> dict[str, Any]:
    """A key pair's attributes: the given public key, or a new ed25519 key pair (the private
    key shown only when ``save_private_key`` is true, as Heat)."""
    public = props.get("public_key")
    if public:
        return {"name": props["name"], "public_key": str(public), "private_key": ""}
    key = ed25519.Ed25519PrivateKey.generate()
    openssh = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    return {
        "name": props["name"],
        "public_key": f"{openssh.decode()} {props['name']}",
        "private_key": private if props.get("save_private_key") else "",
    }
