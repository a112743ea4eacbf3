"""The one definition of "binding verified": pinned here, and asked by the API view, the
mismatch alarm and chain bring-up alike."""

from __future__ import annotations

import datetime as dt

from edgecloud.api import views
from edgecloud.protocol.schemas import InstanceReport
from edgecloud.reconcile import chains as chain_reconciler
from edgecloud.services import bindings, reports
from edgecloud.services.bindings import Binding, binding_state, binding_verified
from edgecloud.services.vnic_addressing import pci_address
from edgecloud.store.models import Flavor, Image, Instance, Network, Vnic

NOW = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)


def vnf(*seen: tuple[str | None, str | None], guest_check: str | None = None) -> Instance:
    """A VNF with one vNIC per ``seen`` entry (guest MAC, guest PCI address)."""
    vnics = [
        Vnic(index=i, mac=f"52:54:00:00:00:0{i}", pci_slot=3 + i, model="virtio", tag=None,
             hostdev_address=None, guest_name=None, guest_mac=mac, guest_pci=pci, fixed_ips=[],
             network=Network(name="lan"))
        for i, (mac, pci) in enumerate(seen)
    ]  # fmt: skip
    return Instance(
        id="i1", name="v1", vnics=vnics, guest_check=guest_check, meta={},
        image=Image(name="img"), flavor=Flavor(name="small"), host=None,
        desired_state="running", status="running", created_at=NOW, updated_at=NOW,
    )  # fmt: skip


def right(i: int) -> tuple[str, str]:
    return f"52:54:00:00:00:0{i}", pci_address(3 + i)


def test_verified_means_every_vnic_at_its_mac_and_slot() -> None:
    assert binding_verified(vnf(right(0), right(1)))
    assert not binding_verified(vnf())  # nothing declared: nothing verified
    assert not binding_verified(vnf(right(0), (None, None)))  # one not reported yet
    assert not binding_verified(vnf(right(0), (right(1)[0], pci_address(9))))  # wrong slot
    assert not binding_verified(vnf((right(1)[0], right(0)[1]), right(1)))  # wrong MAC there


def test_unverifiable_is_shown_as_such_but_is_not_verified() -> None:
    guest = vnf((None, None), guest_check=bindings.UNVERIFIABLE)
    assert binding_state(guest) is Binding.UNVERIFIABLE
    assert not binding_verified(guest)  # a chain never moves traffic to it
    assert binding_state(vnf(right(0))) is Binding.VERIFIED
    assert binding_state(vnf((None, None))) is Binding.NOT_VERIFIED


def test_the_api_and_the_chain_reconciler_ask_the_same_predicate() -> None:
    for instance in (
        vnf(right(0)),
        vnf((None, None)),
        vnf((None, None), guest_check="unverifiable"),
    ):
        out = views.vnf(instance)
        assert out.binding_verified == binding_verified(instance)
        assert out.binding == binding_state(instance).value
        assert out.binding_verified == (out.binding == "verified")
    assert chain_reconciler.binding_verified is binding_verified
    assert reports.binding_verified is binding_verified
    assert reports.vnic_matches is bindings.vnic_matches


async def test_a_report_without_a_domain_is_no_new_boot() -> None:
    """A live migration's source reports no domain (no boot id) just after the switch-over,
    before the move is recorded; the destination's console holds none of the guest's boot
    report. The binding verified at boot stands; only another boot id clears it."""
    instance = vnf(right(0), right(1))
    instance.boot_id = "boot-a"
    absent = InstanceReport(power="absent")
    await reports._update(None, instance, absent)  # type: ignore[arg-type]  # no alarm: no store
    assert instance.boot_id == "boot-a" and binding_verified(instance)
    arrived = InstanceReport(power="running", boot_id="boot-a")
    await reports._update(None, instance, arrived)  # type: ignore[arg-type]
    assert instance.status == "running" and binding_verified(instance)
    rebooted = InstanceReport(power="running", boot_id="boot-b")
    await reports._update(None, instance, rebooted)  # type: ignore[arg-type]
    assert instance.boot_id == "boot-b" and not binding_verified(instance)
    assert [v.guest_mac for v in instance.vnics] == [None, None]
