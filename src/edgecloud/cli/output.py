"""How the CLI shows what the controller answers: JSON for scripts, rich tables for people.

Command modules (cli/hosts.py, vnfs.py, ...) call `emit(data, as_json, columns)` with the
plain JSON the client SDK returned, and put `@json_option` on every list/show/create
command. Lists become a table of `columns`; a single object becomes a two-column
field/value table where nested lists of objects (a VNF's nics) are sub-tables. Timestamps
are shown short, in local time; --json prints the data untouched.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

F = TypeVar("F", bound=Callable[..., Any])
ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$")
# a list of objects in one cell shows this field of each (a vNIC's addresses), else a count
LABEL_KEYS = ("ip_address", "address", "name")
PIPE_WIDTH = 200  # tables are not wrapped at 80 columns when stdout is a pipe or file


def json_option(command: F) -> F:
    """The --json flag; the command receives it as `as_json`."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        command
    )


def wait_options(
    timeout: float = 300, wait_help: str = "Wait until it has settled.", wait: bool = False
) -> Callable[[F], F]:
    """--wait/--no-wait (default ``wait``) and --timeout (seconds, default ``timeout``)."""

    def decorate(command: F) -> F:
        command = click.option(
            "--timeout",
            type=click.FloatRange(min=0),
            default=timeout,
            metavar="SECONDS",
            show_default=True,
            help="Seconds --wait waits.",
        )(command)
        return click.option("--wait/--no-wait", default=wait, show_default=wait, help=wait_help)(
            command
        )

    return decorate


def emit(data: Any, as_json: bool, columns: Sequence[str] = ()) -> None:
    """Print `data` as JSON (field order kept) or as a table: `columns` pick a list's fields."""
    if as_json:
        click.echo(json.dumps(data, indent=2))
    elif isinstance(data, list):
        _console().print(list_table(data, columns))
    elif isinstance(data, dict):
        _console().print(object_table(data))
    else:
        click.echo(cell(data))


@contextmanager
def transfer_progress(label: str) -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar per phase on stderr while the block runs (gone after it): the block
    gets the callback ``(phase, done, total)`` the client's uploads call. Only on a terminal:
    into a pipe or a log it would leave an empty line."""
    console = Console(stderr=True)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=True,
        console=console,
        disable=not console.is_terminal,
    )
    tasks: dict[str, TaskID] = {}

    def progress(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(f"{label}: {phase}", total=total)
        bar.update(tasks[phase], completed=done)

    with bar:
        yield progress


def list_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] = ()) -> Table:
    """One row per object, one column per field in `columns` (default: every field)."""
    columns = columns or (list(rows[0]) if rows else [])
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column.replace("_", " ").upper())
    for row in rows:
        table.add_row(*(_renderable(row.get(column)) for column in columns))
    return table


def object_table(data: dict[str, Any]) -> Table:
    """Field and value, one per line; nested objects and lists of objects as sub-tables."""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in data.items():
        table.add_row(key, _nested(value))
    return table


def cell(value: Any) -> str:
    """One value as short text: '-' for none, yes/no, short local times, lists joined."""
    if value is None or value == []:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        if all(isinstance(item, dict) for item in value):
            label = next((k for k in LABEL_KEYS if all(k in item for item in value)), None)
            if label is None:
                return f"{len(value)} items"
            return ", ".join(cell(item[label]) for item in value)
        return ", ".join(cell(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{key}={cell(item)}" for key, item in value.items())
    if isinstance(value, str) and ISO_TIME.match(value):
        return short_time(value)
    return str(value)


def short_time(value: str) -> str:
    """An ISO 8601 timestamp as 'YYYY-MM-DD HH:MM:SS' in local time (as is if unparsable)."""
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _nested(value: Any) -> RenderableType:
    if isinstance(value, dict):
        return object_table(value)
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        return list_table(value, _filled_columns(value))
    return _renderable(value)


def _filled_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Every field, in first-seen order, that is set in at least one row."""
    keys = list(dict.fromkeys(key for row in rows for key in row))
    return [key for key in keys if any(row.get(key) is not None for row in rows)]


def _renderable(value: Any) -> Text:
    text = Text(cell(value))  # Text, not markup: values may contain [brackets]
    if value is None:
        text.stylize("dim")
    return text


def _console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=PIPE_WIDTH)
    return console
