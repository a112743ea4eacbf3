"""Benchmark: a vendor-style cloud-init VNF on a real all-in-one site (libvirt TCG + OVS).

Part A, create to ready: `vnf create` of a Debian 12 cloud-init guest (images/cloud_guest.py)
until its console says cloud-init finished, read through the API like an operator would:
first on a node that must fetch the image from the controller (the image store's blob over
the agent's mTLS port), then on the same node with the image cached (the first VNF stopped,
so the image stays in use and in the cache). Reported: seconds to `running` (the domain
started: fetch, overlay, config drive, define, start) and to cloud-init finished.

Part B, control plane against raw libvirt, in the same run: the time from `vnf create` (API)
to the domain running on the node (libvirt says active), against `virsh create` of the same
domain XML (dumped from an edgecloud VNF, given a new name, MACs, disk overlay and console),
each repeated, alternating; the guests are destroyed as soon as they run. Reported: medians
and their ratio (what edgecloud's API, scheduler, desired-state push and agent add).

    sudo .venv/bin/python benchmarks/cloud_guest.py [--repeat 3] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from sites import bridge, real_site, write_section

from edgecloud.client import Client
from edgecloud.images.cloud_guest import build_cloud_guest

HEADING = "## A cloud-init VNF: create to ready, cached or not; control plane vs virsh create"
FINISHED = re.compile(r"Cloud-init v\. \S+ finished at")
READY_TIMEOUT = 600.0


def wait(what: str, check: Any, timeout: float, interval: float = 0.2) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(interval)
    raise TimeoutError(f"{what} not within {timeout:.0f} s")


def domain_of(vnf: dict[str, Any]) -> str:
    return f"ec-{vnf['name']}-{vnf['id'][:8]}"


def active(domain: str) -> bool:
    out = subprocess.run(["virsh", "domstate", domain], capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.strip() == "running"


# Part A -----------------------------------------------------------------------------------
def create_to_ready(client: Client, name: str) -> dict[str, Any]:
    t0 = time.monotonic()
    client.create_vnf(name, "debian-cloud", "cloud", [{"network": "lan"}])
    running = wait(f"{name} running", lambda: client.get_vnf(name)["status"] == "running", 300)
    ready = wait(
        f"{name} cloud-init finished",
        lambda: FINISHED.search(client.vnf_console(name)["output"]) is not None,
        READY_TIMEOUT,
        interval=1.0,
    )
    return {
        "vnf": name,
        "to_running_s": round(running, 1),
        "to_cloud_init_finished_s": round(time.monotonic() - t0, 1),
        "after_running_s": round(ready, 1),
    }


# Part B -----------------------------------------------------------------------------------
def edgecloud_to_active(client: Client, name: str) -> float:
    t0 = time.monotonic()
    vnf = client.create_vnf(name, "debian-cloud", "cloud", [{"network": "lan"}])
    wait(f"{name} domain active", lambda: active(domain_of(vnf)), 120, interval=0.05)
    took = time.monotonic() - t0
    client.delete_vnf(name)
    wait(f"{name} gone", lambda: not _exists(client, name), 120)
    return took


def _exists(client: Client, name: str) -> bool:
    return any(v["name"] == name for v in client.list_vnfs())


def virsh_xml(template_domain: str, workdir: Path, index: int) -> Path:
    """The edgecloud domain's XML as a new domain: name, MACs, disk overlay, console, drive."""
    xml = subprocess.run(
        ["virsh", "dumpxml", "--inactive", template_domain],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    root = ET.fromstring(xml)
    name = f"ec-virsh{index}-{secrets.token_hex(3)}"
    root.find("name").text = name  # type: ignore[union-attr]
    for tag in ("uuid",):
        element = root.find(tag)
        if element is not None:
            root.remove(element)
    metadata = root.find("metadata")
    if metadata is not None:
        root.remove(metadata)  # not edgecloud's: its agent must not adopt or delete it
    for i, mac in enumerate(root.iter("mac")):
        mac.set("address", f"52:54:00:ee:{index:02x}:{i:02x}")
    for interface in root.iter("interface"):
        target = interface.find("target")
        if target is not None:
            interface.remove(target)
        port = interface.find("virtualport")
        parameters = port.find("parameters") if port is not None else None
        if port is not None and parameters is not None:
            port.remove(parameters)  # a new OVS port of its own
    for disk in root.iter("disk"):
        source = disk.find("source")
        if source is None:
            continue
        path = Path(source.get("file", ""))
        copy = workdir / f"{name}-{path.name}"
        if disk.get("device") == "disk":
            backing = subprocess.run(
                ["qemu-img", "info", "--output=json", "-U", str(path)],
                check=True, capture_output=True, text=True,
            ).stdout  # fmt: skip
            base = re.search(r'"backing-filename":\s*"([^"]+)"', backing)
            assert base is not None
            subprocess.run(
                ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base.group(1), str(copy)],
                check=True,
            )  # fmt: skip
        else:
            shutil.copyfile(path, copy)
        source.set("file", str(copy))
    for serial in root.iter("serial"):
        source = serial.find("source")
        if source is not None:
            source.set("path", str(workdir / f"{name}.log"))
    for channel in root.iter("channel"):
        source = channel.find("source")
        if source is not None and source.get("path"):
            source.attrib.pop("path")
    out = workdir / f"{name}.xml"
    out.write_text(ET.tostring(root, encoding="unicode"))
    return out


def virsh_to_active(xml: Path) -> float:
    name = ET.parse(xml).getroot().findtext("name")
    t0 = time.monotonic()
    subprocess.run(["virsh", "create", str(xml)], check=True, capture_output=True)
    took = time.monotonic() - t0
    subprocess.run(["virsh", "destroy", str(name)], capture_output=True)
    return took


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    command = "sudo .venv/bin/python benchmarks/cloud_guest.py " + " ".join(sys.argv[1:])
    cache = Path(os.environ.get("EDGECLOUD_IMAGE_CACHE", Path.home() / ".cache/edgecloud/images"))
    image = build_cloud_guest(cache, progress=lambda line: print(f"image: {line}", flush=True))
    token = secrets.token_hex(3)
    with tempfile.TemporaryDirectory(prefix="ec-bench-cloud-") as tmp, bridge(f"ecb{token}") as br:
        work = Path(tmp)
        extra = ("--resync-interval", "1", "--heartbeat-interval", "2")
        with real_site(work, br, *extra) as (client, _info):
            t0 = time.monotonic()
            uploaded = client.upload_image("debian-cloud", image, "qcow2")
            upload_s = time.monotonic() - t0
            client.create_network("lan")
            client.create_flavor("cloud", 1, 1024, 3)
            print(f"uploaded {uploaded['size'] >> 20} MiB in {upload_s:.1f} s", flush=True)
            rows = [create_to_ready(client, "fetching")]
            rows[0]["image"] = "fetched from the controller"
            print(rows[-1], flush=True)
            client.vnf_action("fetching", "stop")  # keeps the image in use, so cached
            wait("fetching stopped", lambda: client.get_vnf("fetching")["status"] == "stopped", 120)
            rows.append(create_to_ready(client, "cached"))
            rows[1]["image"] = "cached on the node"
            print(rows[-1], flush=True)
            template = domain_of(client.get_vnf("cached"))
            ours, theirs = [], []
            for i in range(args.repeat):
                ours.append(edgecloud_to_active(client, f"cp{i}"))
                theirs.append(virsh_to_active(virsh_xml(template, work, i)))
                print(
                    f"round {i}: edgecloud {ours[-1]:.2f} s, virsh create {theirs[-1]:.2f} s",
                    flush=True,
                )
            control = {
                "edgecloud_create_to_running_s": round(statistics.median(ours), 2),
                "virsh_create_s": round(statistics.median(theirs), 2),
                "ratio": round(statistics.median(ours) / statistics.median(theirs), 2),
                "rounds": args.repeat,
            }
            print(control, flush=True)
    section = f"""{HEADING}

Command: `{command}` ({os.cpu_count()} cores, QEMU TCG; the image: Debian 12 with cloud-init
and the QEMU guest agent, {uploaded["size"] >> 20} MiB qcow2, uploaded in {upload_s:.1f} s).

From `vnf create` to the domain running and to cloud-init's "finished" line on the console
(read through the API), 1 vCPU, 1 GiB:

{table(rows, ["image", "to_running_s", "to_cloud_init_finished_s", "after_running_s"])}

edgecloud's control plane (API, scheduler, desired state pushed to the agent, overlay,
config drive, define, start) to a running domain, against `virsh create` of the same XML,
medians of {args.repeat} alternating rounds with the image cached:

{table([control], ["edgecloud_create_to_running_s", "virsh_create_s", "ratio", "rounds"])}
"""
    print(section)
    if args.write:
        write_section(args.write, HEADING, section)


if __name__ == "__main__":
    main()
