"""What the supervisor starts each node's agent with (allinone/supervisor.py, nodes.py): its own
state, host name, libvirt URI, bridge and uplink; one node is today's site exactly; the layout
file `edgecloud down` takes a crashed site down from round-trips."""

from __future__ import annotations

from pathlib import Path

from edgecloud.allinone.fabric import node_address, site_short
from edgecloud.allinone.nodes import LAYOUT_FILE, Layout, teardown
from edgecloud.allinone.supervisor import SiteOptions, Supervisor


def _option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def test_each_real_node_gets_its_own_hypervisor_bridge_and_uplink(tmp_path: Path) -> None:
    site = Supervisor(SiteOptions(tmp_path, driver="libvirt", nodes=2, host_name="edge"))
    assert site.layout is not None
    short = site_short(tmp_path)
    args = [site._args_of(node.child) for node in site.layout.nodes]
    assert [_option(a, "--state-dir") for a in args] == [
        str(tmp_path / "nodes" / f"n{i}" / "agent") for i in (1, 2)
    ]
    assert [_option(a, "--bridge") for a in args] == [f"ecn1-{short}", f"ecn2-{short}"]
    assert [_option(a, "--uplink") for a in args] == [f"ecu1-{short}", f"ecu2-{short}"]
    uris = [_option(a, "--libvirt-uri") or "" for a in args]
    assert uris[0] != uris[1] and all(u.startswith("qemu+unix:///system?socket=") for u in uris)
    assert [n.host for n in site.layout.nodes] == ["edge-n1", "edge-n2"]
    prefix = node_address(short, 1).rsplit(".", 1)[0]
    assert [n.address for n in site.layout.nodes] == [f"{prefix}.1", f"{prefix}.2"]
    assert prefix.startswith("127.") and prefix != "127.0.0"
    other = node_address(site_short(tmp_path / "other"), 1)  # another site: another address
    assert other.rsplit(".", 1)[0] != prefix


def test_fake_nodes_are_plain_fake_agents(tmp_path: Path) -> None:
    site = Supervisor(SiteOptions(tmp_path, driver="fake", nodes=3, host_name="edge"))
    assert site.layout is not None and site.layout.fabric is None
    for node in site.layout.nodes:
        args = site._args_of(node.child)
        assert _option(args, "--driver") == "fake"
        assert "--bridge" not in args and "--libvirt-uri" not in args and "--uplink" not in args


def test_one_node_is_the_local_agent_on_the_hosts_libvirtd(tmp_path: Path) -> None:
    site = Supervisor(SiteOptions(tmp_path, driver="libvirt", bridge="br-x"))
    assert site.layout is None
    args = site._args_of("agent")
    assert _option(args, "--state-dir") == str(tmp_path / "agent")
    assert _option(args, "--bridge") == "br-x"
    assert "--libvirt-uri" not in args and "--uplink" not in args


def test_the_layout_file_round_trips_and_teardown_without_one_does_nothing(
    tmp_path: Path,
) -> None:
    layout = Layout.plan(tmp_path, "edge", 2, real=True)
    layout.save(tmp_path)
    assert (tmp_path / LAYOUT_FILE).exists()
    assert Layout.load(tmp_path) == layout
    (tmp_path / LAYOUT_FILE).unlink()
    assert Layout.load(tmp_path) is None
    assert teardown(tmp_path, {"supervisor": 1, "controller": 2**22 + 1}) is False


def test_the_controller_gets_the_api_address_only_when_one_is_asked(tmp_path: Path) -> None:
    default = Supervisor(SiteOptions(tmp_path))._controller_args()
    assert _option(default, "--listen") == "127.0.0.1" and "--api-listen" not in default
    apart = Supervisor(SiteOptions(tmp_path, api_listen="127.0.0.2"))._controller_args()
    assert _option(apart, "--api-listen") == "127.0.0.2"
    assert _option(apart, "--listen") == "127.0.0.1"  # the agents' gateway stays


def test_the_controller_gets_the_failure_settings_and_recovery_only_when_asked(
    tmp_path: Path,
) -> None:
    default = Supervisor(SiteOptions(tmp_path))._controller_args()
    assert _option(default, "--heartbeat-misses") == "3" and "--host-recovery" not in default
    fast = SiteOptions(tmp_path, heartbeat_interval=0.25, heartbeat_misses=4, host_recovery=True)
    args = Supervisor(fast)._controller_args()
    assert _option(args, "--heartbeat-interval") == "0.25"
    assert _option(args, "--heartbeat-misses") == "4" and "--host-recovery" in args


def test_one_controller_unless_redundant_then_one_on_each_node(tmp_path: Path) -> None:
    plain = Supervisor(SiteOptions(tmp_path, driver="fake", nodes=2, api_port=7443))
    assert [s.child for s in plain.controllers] == ["controller"]
    args = plain._args_of("controller")
    assert _option(args, "--state-dir") == str(tmp_path / "controller")
    assert _option(args, "--listen") == "127.0.0.1" and _option(args, "--api-port") == "7443"
    assert "--site-secret-file" not in args and "--db-witness" not in args

    site = Supervisor(SiteOptions(tmp_path, driver="fake", nodes=2, redundant=True))
    assert site.layout is not None
    site.o.db_url, site.db_witness = "postgresql+asyncpg://u:p@/db?host=h:1&host=h:2", "pg://m"
    assert [(s.child, s.node) for s in site.controllers] == [
        ("controller", site.layout.nodes[0].host),
        ("controller-n2", site.layout.nodes[1].host),
    ]
    first, second = (site._args_of(s.child) for s in site.controllers)
    assert _option(first, "--state-dir") == str(tmp_path / "controller")
    assert _option(second, "--state-dir") == str(tmp_path / "controller-n2")
    assert [_option(first, "--listen"), _option(second, "--listen")] == [
        n.address for n in site.layout.nodes
    ]
    for args in (first, second):  # one store, one CA secret, one witness
        assert _option(args, "--db") == site.o.db_url
        assert _option(args, "--site-secret-file") == str(tmp_path / "site-secret")
        assert _option(args, "--db-witness") == "pg://m"
    secret = (tmp_path / "site-secret").read_text()
    assert len(secret.strip()) >= 16 and (tmp_path / "site-secret").stat().st_mode & 0o077 == 0
    site._args_of("controller-n2")  # kept, not made again
    assert (tmp_path / "site-secret").read_text() == secret
