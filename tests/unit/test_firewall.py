"""edgecloud/firewall.py: the rules a site needs, as nft and iptables lines: a node dials one
TCP port on the controller and listens for nothing but the other nodes' migrations."""

from __future__ import annotations

from edgecloud.firewall import LIBVIRTD_TLS_PORT, MIGRATION_PORTS, SiteEndpoints, profile, render

SITE = SiteEndpoints(
    gateway=("192.0.2.1", 7444),
    api=("198.51.100.1", 7443),
    nodes=("10.0.0.11", "10.0.0.12"),
    api_from="198.51.100.0/24",
)


def _section(lines: list[str], where: str) -> list[str]:
    start = next(i for i, line in enumerate(lines) if line.startswith("# ---") and where in line)
    end = next(
        (i for i, line in enumerate(lines) if i > start and line.startswith("# ---")), len(lines)
    )
    return [line for line in lines[start:end] if not line.startswith("#")]


def test_a_node_gets_one_way_out_and_only_the_migration_way_in() -> None:
    node = _section(render(profile(SITE), "nft"), "node")
    accepts_new = [line for line in node if "ct state new accept" in line]
    assert accepts_new == [
        "nft add rule inet edgecloud output ip daddr 192.0.2.1 tcp dport 7444 ct state new accept",
        "nft add rule inet edgecloud input ip saddr { 10.0.0.11, 10.0.0.12 } ip daddr "
        "{ 10.0.0.11, 10.0.0.12 } tcp dport { 16514, 49152-49215 } ct state new accept",
        "nft add rule inet edgecloud output ip saddr { 10.0.0.11, 10.0.0.12 } ip daddr "
        "{ 10.0.0.11, 10.0.0.12 } tcp dport { 16514, 49152-49215 } ct state new accept",
    ]
    assert any("input '{ type filter hook input priority 0; policy drop; }'" in x for x in node)
    assert (LIBVIRTD_TLS_PORT, MIGRATION_PORTS) == (16514, (49152, 49215))  # architecture.md


def test_the_controller_takes_agents_from_anywhere_and_the_api_from_its_network() -> None:
    controller = _section(render(profile(SITE), "iptables"), "controller")
    assert [line for line in controller if "--ctstate NEW" in line] == [
        "iptables -A INPUT -p tcp -d 192.0.2.1 -m multiport --dports 7444 "
        "-m conntrack --ctstate NEW -j ACCEPT",
        "iptables -A INPUT -p tcp -s 198.51.100.0/24 -d 198.51.100.1 -m multiport --dports "
        "7443 -m conntrack --ctstate NEW -j ACCEPT",
    ]
    assert "iptables -P INPUT DROP" in controller and "ip6tables -P INPUT DROP" in controller


def test_one_node_has_no_migration_rule_and_ipv6_uses_ip6_rules() -> None:
    site = SiteEndpoints(gateway=("2001:db8::1", 7444), api=("2001:db8::1", 7443), nodes=("::1",))
    lines = render(profile(site), "nft")
    assert not any("16514" in line for line in lines)
    assert any("fewer than two nodes" in line for line in lines)
    assert (
        "nft add rule inet edgecloud output ip6 daddr 2001:db8::1 tcp dport 7444 ct state new accept"
        in lines
    )
    ip6 = render(profile(site), "iptables")
    assert (
        "ip6tables -A OUTPUT -p tcp -d 2001:db8::1 -m multiport --dports 7444 -m conntrack --ctstate NEW -j ACCEPT"
        in ip6
    )
