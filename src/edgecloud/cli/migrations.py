"""`edgecloud vnf migrate NAME` and `edgecloud migration list|show`: moving VNFs between hosts.

Commands call the client SDK (Client.migrate_vnf, wait_for_migration) and print with
cli/output.py; registered on `edgecloud` by cli/main.py (`vnf migrate` joins the vnf group of
cli/vnfs.py). --wait prints a progress line per status on stderr, then one result line.
"""

from __future__ import annotations

from typing import Any

import click

from edgecloud.cli.context import pass_client
from edgecloud.cli.output import emit, json_option, wait_options
from edgecloud.cli.vnfs import vnf
from edgecloud.client import Client
from edgecloud.errors import ClientError

COLUMNS = (
    "id",
    "vnf",
    "kind",
    "status",
    "source_host",
    "destination_host",
    "downtime_ms",
    "total_ms",
    "created_at",
)


@vnf.command()
@click.argument("name")
@click.option("--to", "to_host", metavar="HOST", help="Destination host [default: scheduler's].")
@click.option(
    "--cold",
    is_flag=True,
    help="Stop the VNF and start it on the destination (for VNFs with host PCI devices); its "
    "disk starts again from its image.",
)
@click.option(
    "--memory-copy",
    type=click.Choice(["auto", "pre-copy", "paused"]),
    default=None,
    help="Live: copy the memory while the guest runs (pre-copy) or with it paused (paused) "
    "[default: auto, pre-copy except under QEMU's TCG emulator before 9.0].",
)
@click.option(
    "--max-downtime",
    "max_downtime_ms",
    type=click.IntRange(10, 10_000),
    default=None,
    metavar="MS",
    help="Live: the longest the guest may be paused at the end of the copy [default: 100].",
)
@wait_options(600, "Wait until it is done or failed.")
@json_option
@pass_client
def migrate(
    client: Client,
    name: str,
    to_host: str | None,
    cold: bool,
    memory_copy: str | None,
    max_downtime_ms: int | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Move VNF NAME to another host, live (the guest keeps running) unless --cold."""
    migration = client.migrate_vnf(name, to_host, cold, memory_copy, max_downtime_ms)
    if not wait:
        emit(_row(migration) if not as_json else migration, as_json)
        return
    migration = client.wait_for_migration(migration["id"], timeout, on_progress=_Progress())
    if as_json:
        emit(migration, True)
    if migration["status"] == "failed":
        raise ClientError(
            f"migration of {name} failed, it stays on {migration['source_host']}: "
            f"{migration.get('error')}"
        )
    if not as_json:
        click.echo(result_line(migration))


def result_line(migration: dict[str, Any]) -> str:
    """One line: where it went, downtime and total time."""
    stats = migration.get("stats") or {}
    downtime = stats.get("downtime_ms")
    parts = [f"{stats['memory_copy']}" if stats.get("memory_copy") else None]
    parts.append(f"downtime {float(downtime):.0f} ms" if downtime is not None else None)
    if stats.get("total_ms") is not None:
        parts.append(f"total {float(stats['total_ms']) / 1000:.1f} s")
    figures = ", ".join(p for p in parts if p)
    return (
        f"vnf {migration['vnf']} migrated ({migration['kind']}) from {migration['source_host']} "
        f"to {migration['destination_host']}" + (f": {figures}" if figures else "")
    )


class _Progress:
    """One stderr line each time the migration's status changes."""

    def __init__(self) -> None:
        self.last = ""

    def __call__(self, migration: dict[str, Any]) -> None:
        line = (
            f"migration of {migration['vnf']} to {migration['destination_host']}: "
            f"{migration['status']}"
        )
        if line != self.last:
            click.echo(line, err=True)
            self.last = line


@click.group()
def migration() -> None:
    """Migrations of VNFs between hosts."""


@migration.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@json_option
@pass_client
def list_(client: Client, limit: int, as_json: bool) -> None:
    """The latest migrations, newest first."""
    found = client.list_migrations(limit)
    emit(found if as_json else [_row(m) for m in found], as_json, COLUMNS)


@migration.command()
@click.argument("migration_id")
@json_option
@pass_client
def show(client: Client, migration_id: str, as_json: bool) -> None:
    """One migration."""
    emit(client.get_migration(migration_id), as_json)


def _row(m: dict[str, Any]) -> dict[str, Any]:
    stats = m.get("stats") or {}
    return {
        **{k: v for k, v in m.items() if k != "stats"},
        "downtime_ms": stats.get("downtime_ms"),
        "total_ms": stats.get("total_ms"),
    }


def register(cli: click.Group) -> None:
    cli.add_command(migration)
