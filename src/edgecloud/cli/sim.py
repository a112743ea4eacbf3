"""`edgecloud sim SCENARIO` and `edgecloud capacity`: the scale and storm simulator.

`sim` runs N simulated nodes (real agents, fake driver, own certificates, own mTLS
connections) against a real controller process on loopback (sim/), shows progress, and writes
results.json, results.md and PNG plots. `sim storm` runs with protections on and then off
(`--compare`, the default) so both are reported side by side; with `--anonymous N` (N
anonymous connections held on the gateway and the API through the storm) the comparison is
the same storm without them. `capacity` steps N up until an
SLO breaks and writes the table to docs/capacity.md. Both take ``--db`` (a PostgreSQL store
instead of the controller's SQLite file), ``--controllers 2`` (two controller processes on
that store, the nodes split between them) and ``--host-recovery`` (controllers echo the
heartbeats of agents that fence). `sim sites --sites N` runs N simulated site controllers
against a real central instead (cli/sim_sites.py).
"""

from __future__ import annotations

import asyncio
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import click

SLO_API_P99 = 1.0
SLO_STORM_RECOVERY = 60.0


def _site_options(f: Any) -> Any:
    """--controllers, --db, --host-recovery (sim and capacity)."""
    f = click.option(
        "--host-recovery",
        is_flag=True,
        help="Controllers with --host-recovery: they echo every heartbeat of an agent that "
        "fences itself (every simulated agent does).",
    )(f)
    f = click.option(
        "--db",
        "db_url",
        metavar="URL",
        help="Store URL, e.g. postgresql+asyncpg://user:pass@host/db (an empty database the "
        "simulator may fill) [default: SQLite in the state dir].",
    )(f)
    return click.option(
        "--controllers",
        type=click.IntRange(1, 4),
        default=1,
        show_default=True,
        help="Controller processes on one store (more than one needs --db PostgreSQL); the "
        "nodes are split between their gateways and know every one.",
    )(f)


def _check_site(controllers: int, db_url: str | None) -> None:
    from edgecloud.store.leadership import is_postgresql

    if controllers > 1 and not (db_url and is_postgresql(db_url)):
        raise click.BadParameter(
            "several controllers share one PostgreSQL store: give --db postgresql+asyncpg://...",
            param_hint="--controllers",
        )


def _options(**kw: Any) -> Any:
    from edgecloud.sim.scenarios import SimOptions

    return SimOptions(**kw)


async def _run(scenario: str, runs: list[Any], quiet: bool) -> list[dict[str, Any]]:
    from rich.console import Console
    from rich.live import Live

    from edgecloud.sim.scenarios import SCENARIOS

    console = Console(stderr=True)
    results = []
    with Live(console=console, refresh_per_second=4, transient=quiet) as live:
        for options in runs:
            anon = f", {options.anonymous:,} anonymous" if options.anonymous else ""
            label = f"[{scenario}, protection {'on' if options.protection else 'off'}{anon}] "
            started = time.monotonic()

            def progress(text: str, label: str = label, started: float = started) -> None:
                live.update(f"{label}{text} (total {time.monotonic() - started:.0f} s)")

            result = await SCENARIOS[scenario](options, progress)
            result["scenario"] = scenario
            results.append(result)
            console.print(f"{label}done")
    return results


@click.command("sim")
@click.argument("scenario", type=click.Choice(["steady", "launch", "storm", "dor", "sites"]))
@click.option("--nodes", type=click.IntRange(1, 20000), default=100, show_default=True)
@click.option(
    "--sites",
    type=click.IntRange(1, 20000),
    default=100,
    show_default=True,
    help="sites: simulated site controllers against one central.",
)
@click.option("--vnfs", type=click.IntRange(0), default=0, help="VNFs (launch, dor).")
@click.option("--heartbeat", type=float, default=10.0, show_default=True)
@click.option("--duration", type=float, default=30.0, show_default=True, help="Steady duration.")
@click.option("--timeout", type=float, default=180.0, show_default=True)
@click.option("--workers", type=click.IntRange(1), help="[default: one per 2,500 nodes, >= 2]")
@click.option(
    "--sources",
    type=click.IntRange(1, 20000),
    help="Source addresses the nodes share (127.1.1.1 and up)  [default: one per node].",
)
@click.option(
    "--protection/--no-protection", default=True, help="Controller and agent protections."
)
@click.option(
    "--max-handshakes", type=click.IntRange(1), help="Controller's TLS handshakes in flight."
)
@click.option(
    "--compare/--no-compare",
    default=None,
    help="Also run without protections (with --anonymous: without the anonymous peers) "
    "[storm: yes].",
)
@click.option(
    "--anonymous",
    type=click.IntRange(0, 20000),
    default=0,
    help="Storm: anonymous connections held on the gateway (half) and the API (half, "
    "slowloris) through it.",
)
@click.option(
    "--anonymous-sources",
    type=click.IntRange(1, 55),
    default=16,
    show_default=True,
    help="127.0.0.x source addresses of the anonymous connections (127.0.0.200 and up).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".sim"),
    show_default=True,
    help="Simulator state (controller, enrolled nodes: cached between runs).",
)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("results/sim")
)
@_site_options
def sim(
    scenario: str,
    nodes: int,
    sites: int,
    vnfs: int,
    heartbeat: float,
    duration: float,
    timeout: float,
    workers: int | None,
    sources: int | None,
    protection: bool,
    max_handshakes: int | None,
    compare: bool | None,
    anonymous: int,
    anonymous_sources: int,
    state_dir: Path,
    out: Path,
    controllers: int,
    db_url: str | None,
    host_recovery: bool,
) -> None:
    """Run SCENARIO (steady, launch, storm, dor) with N simulated nodes, or `sites`: a cold
    start, steady state, a WAN-restore storm and a deployment with N simulated sites against
    one central (--sites, --workers, --heartbeat, --duration, --timeout, --protection and
    --compare apply)."""
    from edgecloud.sim import reporting

    if scenario == "sites":
        from edgecloud.cli import sim_sites

        compare = True if compare is None else compare
        sim_sites.run(
            sites, heartbeat, duration, timeout, workers, protection, compare, state_dir, out
        )
        return
    _check_site(controllers, db_url)
    if anonymous and scenario != "storm":
        raise click.BadParameter("anonymous connections are part of the storm scenario only")
    if scenario in ("launch", "dor") and vnfs == 0:
        vnfs = max(1, nodes * 2)
    base = dict(
        state_dir=state_dir,
        nodes=nodes,
        heartbeat=heartbeat,
        workers=workers or max(2, math.ceil(nodes / 2500)),
        sources=sources,
        duration=duration,
        timeout=timeout,
        vnfs=vnfs,
        max_handshakes=max_handshakes,
        anonymous_sources=anonymous_sources,
        controllers=controllers,
        db_url=db_url,
        host_recovery=host_recovery,
    )
    runs = [_options(**base, protection=protection, anonymous=anonymous)]
    if compare if compare is not None else scenario == "storm":
        other = dict(protection=protection) if anonymous else dict(protection=not protection)
        runs.append(_options(**base, **other))
    results = asyncio.run(_run(scenario, runs, quiet=False))
    command = "edgecloud " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    reporting.write(out, results, command)
    click.echo(reporting.table(results))
    click.echo(f"results in {out}/ (results.json, results.md, {scenario}.png)")


@click.command("capacity")
@click.option(
    "--nodes",
    "steps",
    default="1000,2500,5000,7500,10000,15000,20000",
    show_default=True,
    help="Node counts to try, in increasing order; stops at the first that breaks an SLO.",
)
@click.option("--heartbeat", type=float, default=10.0, show_default=True)
@click.option("--duration", type=float, default=30.0, show_default=True)
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".sim"))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("docs/capacity.md"),
    show_default=True,
    help="The table goes between the capacity-table markers (appended if there are none).",
)
@click.option(
    "--results", type=click.Path(file_okay=False, path_type=Path), default=Path("results/capacity")
)
@_site_options
def capacity(
    steps: str,
    heartbeat: float,
    duration: float,
    state_dir: Path,
    out: Path,
    results: Path,
    controllers: int,
    db_url: str | None,
    host_recovery: bool,
) -> None:
    """Step N up (steady, then a storm, at each N) until an SLO breaks; write the table."""
    from edgecloud.sim import reporting

    _check_site(controllers, db_url)
    counts = _node_counts(steps)
    command = "edgecloud " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = []
    for n in counts:
        base = dict(
            state_dir=state_dir,
            nodes=n,
            heartbeat=heartbeat,
            workers=max(2, math.ceil(n / 2500)),
            duration=duration,
            timeout=120.0,
            controllers=controllers,
            db_url=db_url,
            host_recovery=host_recovery,
        )
        click.echo(f"{n} nodes: steady, then storm", err=True)
        steady = asyncio.run(_run("steady", [_options(**base)], quiet=True))[0]
        storm = asyncio.run(_run("storm", [_options(**base)], quiet=True))[0]
        reporting.write(results / f"{n}", [steady, storm], command)
        row = _capacity_row(n, steady, storm)
        rows.append(row)
        click.echo(_row_line(row))
        _write_capacity(out, rows, reporting.machine(), heartbeat, command, started)
        if row["slo_broken"]:
            break
    click.echo(f"capacity table written to {out}; runs in {results}/")


def _node_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of node counts") from None
    if not counts or counts != sorted(set(counts)) or not 1 <= counts[0] <= counts[-1] <= 20000:
        raise click.BadParameter("node counts must increase, each 1..20000", param_hint="--nodes")
    return counts


def _capacity_row(n: int, steady: dict[str, Any], storm: dict[str, Any]) -> dict[str, Any]:
    p99 = steady["api"]["p99_s"] or 0.0
    storm_p99 = storm["api"]["p99_s"] or 0.0
    broken = []
    if p99 > SLO_API_P99 or storm_p99 > SLO_API_P99:
        broken.append("API p99")
    if steady.get("hb_late", 0):
        broken.append("heartbeats late")
    if storm["recovery_s"] is None or storm["recovery_s"] > SLO_STORM_RECOVERY:
        broken.append("storm recovery")
    interventions = (steady.get("manual_interventions") or 0) + (
        storm.get("manual_interventions") or 0
    )
    if interventions:
        broken.append("manual interventions")
    return {
        "nodes": n,
        "api_p99_steady_s": p99,
        "api_p99_storm_s": storm_p99,
        "storm_recovery_s": storm["recovery_s"],
        "hb_late": steady.get("hb_late", 0),
        "hb_lag_max_s": steady.get("hb_lag_max_s"),
        "cpu_pct_steady": steady.get("controller_cpu_pct_mean"),
        "cpu_pct_storm_max": storm.get("controller_cpu_pct_max"),
        "rss_mib": max(
            steady.get("controller_rss_mib_max") or 0, storm.get("controller_rss_mib_max") or 0
        ),
        "marked_offline": storm.get("hosts_marked_offline", 0),
        "interventions": interventions,
        "slo_broken": ", ".join(broken),
    }


def _row_line(r: dict[str, Any]) -> str:
    recovery = "-" if r["storm_recovery_s"] is None else format(r["storm_recovery_s"], ".1f")
    lag = "-" if r["hb_lag_max_s"] is None else format(r["hb_lag_max_s"], ".2f")
    return (
        f"| {r['nodes']:,} | {r['api_p99_steady_s']:.3f} | {r['api_p99_storm_s']:.3f} | "
        f"{recovery} | {r['hb_late']} ({lag}) | {r['cpu_pct_steady'] or 0:.0f} | "
        f"{r['cpu_pct_storm_max'] or 0:.0f} | {r['rss_mib']:,.0f} | {r['marked_offline']} | "
        f"{r['interventions']} | {r['slo_broken'] or 'none'} |"
    )


BEGIN, END = "<!-- capacity-table:begin -->", "<!-- capacity-table:end -->"


def _write_capacity(
    out: Path,
    rows: list[dict[str, Any]],
    machine: dict[str, Any],
    heartbeat: float,
    command: str,
    started: str,
) -> None:
    """Put the table between the markers in ``out``, keeping the rest of the file."""
    last = rows[-1]
    verdict = (
        f"{last['nodes']:,} nodes broke: {last['slo_broken']}; the capacity is the row above it."
        if last["slo_broken"]
        else f"no SLO broke up to {last['nodes']:,} nodes (the largest step tried)."
    )
    lines = [
        BEGIN,
        f"Generated by `{command}`, started {started}. Machine: {machine['cores']} cores "
        f"({machine['cpu']}), {machine['memory_gib']} GiB, {machine['os']}, Python "
        f"{machine['python']}; the controller, the simulator's workers and the API load share "
        "the cores.",
        "",
        "| nodes | API p99 steady (s) | API p99 storm (s) | storm recovery (s) "
        "| late heartbeats (max lag s) | ctl CPU steady (% of a core) | ctl CPU storm max (%) "
        "| ctl RSS (MiB) | marked offline in storm | manual interventions | SLO broken |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(_row_line(r) for r in rows),
        "",
        f"SLOs: API p99 under {SLO_API_P99:g} s in steady state and during the storm; every "
        f"heartbeat ({heartbeat:g} s interval) processed within its interval; every node back "
        f"and in sync within {SLO_STORM_RECOVERY:g} s of a storm; no manual intervention. "
        f"Result: {verdict}",
        END,
    ]
    text = out.read_text() if out.exists() else "# Capacity: compute nodes per controller\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + "\n".join(lines) + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


def register(cli: click.Group) -> None:
    cli.add_command(sim)
    cli.add_command(capacity)
