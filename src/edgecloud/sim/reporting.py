"""Simulator results: results.json, a Markdown table (results.md) and PNG plots.

Plots: connected nodes over time for each scenario run; for the storm, protections on and off
in one plot. The sites scenario (sim/site_scenarios.py) has its own columns (``SITE_COLUMNS``:
a row per phase) and plots its storm.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import psutil

COLUMNS = (
    ("scenario", "scenario"),
    ("protection", "protection"),
    ("nodes", "nodes"),
    ("anonymous.connections", "anonymous connections"),
    ("anonymous.open_mean", "anonymous open (mean)"),
    ("anonymous.closed_by_controller", "anonymous closed by controller"),
    ("cold_start_s", "cold start (s)"),
    ("recovery_s", "storm recovery (s)"),
    ("all_running_s", "launch: all running (s)"),
    ("all_vnfs_running_again_s", "DOR: all VNFs running again (s)"),
    ("api.p50_s", "API p50 (s)"),
    ("api.p99_s", "API p99 (s)"),
    ("api.errors", "API errors"),
    ("controller_cpu_pct_mean", "ctl CPU mean (%)"),
    ("controller_cpu_pct_max", "ctl CPU max (%)"),
    ("controller_rss_mib_max", "ctl RSS max (MiB)"),
    ("workers_cpu_pct_mean", "workers CPU mean (%)"),
    ("worker_rss_mib", "workers RSS (MiB)"),
    ("messages_per_s", "msgs/s"),
    ("hb_late", "late heartbeats"),
    ("hb_lag_max_s", "max hb lag (s)"),
    ("accepted", "connections accepted"),
    ("retries", "retry sent"),
    ("tls_resumed", "TLS resumed"),
    ("handshake_mean_s", "handshake mean (s)"),
    ("handshakes_failed", "TLS failures"),
    ("handshakes_slow", "slow handshakes (> lease)"),
    ("loop_lag_max_s", "ctl loop lag max (s)"),
    ("hosts_marked_offline", "marked offline"),
    ("manual_interventions", "manual interventions"),
)

SITE_COLUMNS = (
    ("phase", "phase"),
    ("protection", "protection"),
    ("sites", "sites"),
    ("in_sync_s", "all in sync (s)"),
    ("api.p50_s", "API p50 (s)"),
    ("api.p99_s", "API p99 (s)"),
    ("api_site.p99_s", "GET /v1/sites/{name} p99 (s)"),
    ("api_fleet.p99_s", "GET /v1/fleet p99 (s)"),
    ("api.errors", "API errors"),
    ("post_s", "POST /v1/deployments (s)"),
    ("central_cpu_pct_mean", "central CPU mean (%)"),
    ("central_cpu_pct_max", "central CPU max (%)"),
    ("central_rss_mib_max", "central RSS max (MiB)"),
    ("central_fds_max", "central fds max"),
    ("workers_cpu_pct_mean", "workers CPU mean (%)"),
    ("workers_rss_mib", "workers RSS (MiB)"),
    ("manual_interventions", "manual interventions"),
)
Columns = tuple[tuple[str, str], ...]


def machine() -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def _cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _get(result: dict[str, Any], key: str) -> Any:
    value: Any = result
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    return str(value)


def table(results: list[dict[str, Any]], columns_: Columns = COLUMNS) -> str:
    columns = [c for c in columns_ if any(_get(r, c[0]) is not None for r in results)]
    lines = [
        "| " + " | ".join(title for _, title in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for result in results:
        lines.append("| " + " | ".join(_cell(_get(result, key)) for key, _ in columns) + " |")
    return "\n".join(lines)


def write(
    out: Path, results: list[dict[str, Any]], command: str, columns: Columns = COLUMNS
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    info = machine()
    (out / "results.json").write_text(
        json.dumps({"command": command, "machine": info, "runs": results}, indent=1)
    )
    md = [
        "# edgecloud sim results",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {info['cores']} cores, {info['memory_gib']} GiB, {info['os']}, "
        f"Python {info['python']}",
        "",
        table(results, columns),
        "",
    ]
    (out / "results.md").write_text("\n".join(md))
    return plots(out, results)


def plots(out: Path, results: list[dict[str, Any]]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    by_scenario: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        if "timeline" in result:  # the sites scenario: its storm rows only
            by_scenario.setdefault(result["scenario"], []).append(result)
    for scenario, runs in by_scenario.items():
        unit = "sites" if "sites" in runs[0] else "nodes"
        process = "central" if unit == "sites" else "controller"
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
        for run in runs:
            label = f"protection {'on' if run['protection'] else 'off'}"
            if run.get("anonymous"):
                label += f", {run['anonymous']['connections']:,} anonymous"
            rows = run["timeline"]
            zero = run.get("drop_at_s", 0.0)
            t = [r["t"] - zero for r in rows]
            top.plot(t, [r["connected"] for r in rows], label=f"connected ({label})")
            top.plot(t, [r["in_sync"] for r in rows], "--", label=f"in sync ({label})")
            bottom.plot(t, [r["cpu_pct"] for r in rows], label=f"{process} CPU % ({label})")
        top.set_ylabel(unit)
        top.set_title(f"{scenario}: {runs[0][unit]} simulated {unit}")
        top.legend(fontsize="small")
        bottom.set_ylabel("CPU % (of one core)")
        dropped = scenario in ("storm", "sites")
        bottom.set_xlabel("seconds" + (" from the drop" if dropped else ""))
        bottom.legend(fontsize="small")
        path = out / f"{scenario}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
