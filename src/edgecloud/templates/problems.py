"""How the template engine reports a problem: a path into the template and a line.

Every module of templates/ raises ``edgecloud.errors.TemplateError`` through these helpers,
so each message reads ``<source> line <n>: <path>: <what is wrong>`` and ``field`` is the
path (``resources.vnf.properties.networks[1].port``). templates/parsing.py maps paths to
lines at load time; templates/resolving.py uses a resource's own line at resolve time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

from edgecloud.errors import TemplateError

PathPart = str | int
Path = tuple[PathPart, ...]
Fail = Callable[[Path, str], NoReturn]


def format_path(path: Path) -> str:
    """``("resources", "vnf", "networks", 1)`` -> ``resources.vnf.networks[1]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def template_error(source: str | None, line: int | None, path: Path, message: str) -> TemplateError:
    """A TemplateError whose message names the source, line and path and whose field is the path.

    Without a source (a bad parameter value rather than a bad template) only the path is named.
    """
    where = source if line is None or source is None else f"{source} line {line}"
    field = format_path(path)
    parts = [part for part in (where, field, message) if part]
    return TemplateError(": ".join(parts), field or None)


def failing_at_line(source: str | None, line: int | None) -> Fail:
    """A ``Fail`` that reports every path at one line (a resource's, at resolve time)."""

    def fail(path: Path, message: str) -> NoReturn:
        raise template_error(source, line, path, message)

    return fail
