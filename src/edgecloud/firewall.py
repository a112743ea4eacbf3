"""The firewall rules a site needs, as nftables or iptables lines (pure; no I/O).

What a site sends over the network, and so all a customer's firewall has to let through:

- a node dials ONE TCP port on the controller, the agent gateway (mutual TLS; consoles,
  images and everything else ride it); nothing connects to a node from outside;
- nodes migrate VNFs to each other on the site's internal network: libvirtd TLS on
  LIBVIRTD_TLS_PORT and QEMU's migration and NBD streams on MIGRATION_PORTS (libvirt's
  default range), both ways between the nodes' internal addresses only
  (docs/architecture.md, "Migration");
- operators reach the REST API on its own address and port (HTTPS).

``profile`` turns a ``SiteEndpoints`` into ``Rule``s; ``render`` writes them for nft or
iptables/ip6tables. cli/firewall.py reads the site's actual endpoints and prints them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

LIBVIRTD_TLS_PORT = 16514
MIGRATION_PORTS = (49152, 49215)  # libvirt's migration_port_min/max: QEMU migration and NBD
Format = Literal["nft", "iptables"]
FORMATS: tuple[Format, ...] = ("nft", "iptables")
Chain = Literal["input", "output"]
NFT_TABLE = "inet edgecloud"


@dataclass(frozen=True)
class SiteEndpoints:
    """Where a site listens and who talks to it.

    gateway: (address, port) the nodes dial; api: (address, port) of the REST API;
    nodes: the nodes' internal addresses (empty: not known yet, written as a placeholder
    set); api_from: who may reach the API (a CIDR; None: anyone).
    """

    gateway: tuple[str, int]
    api: tuple[str, int]
    nodes: tuple[str, ...] = ()
    api_from: str | None = None


@dataclass(frozen=True)
class Rule:
    """Accept new TCP connections in ``chain`` from ``sources`` to ``destinations`` on
    ``ports`` (a port, or a range as (low, high)); empty sources/destinations: any."""

    where: str  # which machine's firewall: "node", "controller"
    chain: Chain
    ports: tuple[int | tuple[int, int], ...]
    sources: tuple[str, ...] = ()
    destinations: tuple[str, ...] = ()
    comment: str = ""
    family: Literal[4, 6] = field(default=4)


def profile(site: SiteEndpoints) -> list[Rule]:
    """Every rule the site needs: for each node, for the controller."""
    gw_host, gw_port = site.gateway
    api_host, api_port = site.api
    migration = (LIBVIRTD_TLS_PORT, MIGRATION_PORTS)
    nodes = site.nodes
    rules = [
        Rule(
            "node",
            "output",
            (gw_port,),
            destinations=(gw_host,),
            comment="to the controller's agent gateway (mTLS): the only way out a node needs",
        ),
    ]
    if len(nodes) >= 2:  # one node migrates to no one
        rules += [
            Rule(
                "node",
                "input",
                migration,
                sources=nodes,
                destinations=nodes,
                comment="live migration from the other nodes (libvirtd TLS, QEMU migration + NBD)",
            ),
            Rule(
                "node",
                "output",
                migration,
                sources=nodes,
                destinations=nodes,
                comment="live migration to the other nodes",
            ),
        ]
    rules += [
        Rule(
            "controller",
            "input",
            (gw_port,),
            destinations=(gw_host,),
            comment="agents dialling in (nodes may be behind NAT: any source)",
        ),
        Rule(
            "controller",
            "input",
            (api_port,),
            sources=(site.api_from,) if site.api_from else (),
            destinations=(api_host,),
            comment="the REST API (HTTPS, bearer tokens)",
        ),
    ]
    return [_with_family(r) for r in rules]


def _with_family(rule: Rule) -> Rule:
    six = any(_version(a) == 6 for a in (*rule.sources, *rule.destinations))
    return Rule(**{**rule.__dict__, "family": 6 if six else 4})


def _version(address: str) -> int:
    try:
        return ipaddress.ip_network(address, strict=False).version
    except ValueError:  # a DNS name (--advertise): nft and iptables resolve it when loaded
        return 4


def render(rules: list[Rule], fmt: Format) -> list[str]:
    """The rules as lines of ``fmt``, grouped by machine, with the stateful basics (replies
    to what was let out; everything else dropped on input) before them."""
    lines: list[str] = []
    for where in ("node", "controller"):
        mine = [r for r in rules if r.where == where]
        lines.append(
            f"# --- on each {where} ---" if where == "node" else f"# --- on the {where} ---"
        )
        lines += _preamble(fmt)
        for rule in mine:
            lines.append(f"# {rule.comment}")
            lines.append(_nft(rule) if fmt == "nft" else _iptables(rule))
        if where == "node" and not any(r.chain == "input" for r in mine):
            lines.append("# between nodes: no rule (fewer than two nodes with an internal address)")
        if where == "node":
            lines.append("# nothing else inbound: nothing on a node listens for the outside")
    return lines


def _preamble(fmt: Format) -> list[str]:
    """Drop what is not allowed, both ways; let replies and loopback through. (edgecloud needs
    nothing more; add what the machine itself needs, such as DNS and NTP.)"""
    if fmt == "nft":
        lines = [f"nft add table {NFT_TABLE}"]
        for chain in ("input", "output"):
            hook = f"type filter hook {chain} priority 0; policy drop;"
            lines.append(f"nft add chain {NFT_TABLE} {chain} '{{ {hook} }}'")
            lines.append(f"nft add rule {NFT_TABLE} {chain} ct state established,related accept")
            lines.append(f"nft add rule {NFT_TABLE} {chain} {_LO[chain]} lo accept")
        return lines
    lines = []
    for tool in ("iptables", "ip6tables"):
        for chain in ("INPUT", "OUTPUT"):
            flag = "-i" if chain == "INPUT" else "-o"
            lines.append(f"{tool} -P {chain} DROP")
            lines.append(f"{tool} -A {chain} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT")
            lines.append(f"{tool} -A {chain} {flag} lo -j ACCEPT")
    return lines


_LO = {"input": "iif", "output": "oif"}


def _ports_nft(ports: tuple[int | tuple[int, int], ...]) -> str:
    items = [f"{p[0]}-{p[1]}" if isinstance(p, tuple) else str(p) for p in ports]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _set_nft(addresses: tuple[str, ...]) -> str:
    return addresses[0] if len(addresses) == 1 else "{ " + ", ".join(addresses) + " }"


def _nft(rule: Rule) -> str:
    ip = "ip6" if rule.family == 6 else "ip"
    parts = [f"nft add rule {NFT_TABLE} {rule.chain}"]
    if rule.sources:
        parts.append(f"{ip} saddr {_set_nft(rule.sources)}")
    if rule.destinations:
        parts.append(f"{ip} daddr {_set_nft(rule.destinations)}")
    parts.append(f"tcp dport {_ports_nft(rule.ports)} ct state new accept")
    return " ".join(parts)


def _iptables(rule: Rule) -> str:
    tool = "ip6tables" if rule.family == 6 else "iptables"
    chain = rule.chain.upper()
    ports = ",".join(f"{p[0]}:{p[1]}" if isinstance(p, tuple) else str(p) for p in rule.ports)
    parts = [f"{tool} -A {chain} -p tcp"]
    if rule.sources:
        parts.append(f"-s {','.join(rule.sources)}")
    if rule.destinations:
        parts.append(f"-d {','.join(rule.destinations)}")
    parts.append(f"-m multiport --dports {ports} -m conntrack --ctstate NEW -j ACCEPT")
    return " ".join(parts)
