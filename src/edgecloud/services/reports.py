"""What agents report: applied versions (ack/nack), observed instance state, host alarms.

Observed state is a full report for the node: an ``InstanceReport`` per instance id
(protocol/schemas.py: power, boot id, error, the guest's vNICs, guest check, an incoming
migration's progress), read by the gateway from the agent's message. From it the controller
derives each instance's
status, records faults as alarms, verifies the vNIC binding the guest saw (services/bindings.py),
and finishes deletions. ``guest_check`` is "unverifiable" when the node gave up asking the guest
of this boot (no console report, no guest agent answer in time); older agents never send it.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.fm import alarming, catalogue
from edgecloud.protocol.schemas import GuestVnic, InstanceReport
from edgecloud.services import migrations
from edgecloud.services.bindings import UNVERIFIABLE, binding_verified, vnic_matches
from edgecloud.services.context import ServiceContext
from edgecloud.services.vnic_addressing import pci_address
from edgecloud.store.database import transaction
from edgecloud.store.models import Alarm, Host, Instance, utcnow

HOST_ALARMS = {
    catalogue.HOST_DRIVER_UNAVAILABLE,
    catalogue.HOST_DISK_FULL,
    catalogue.HOST_CERT_EXPIRING,
    catalogue.HOST_CERT_RENEWAL_FAILED,
    catalogue.HOST_FENCED,
}


async def record_applied(
    ctx: ServiceContext, host_id: str, version: int, error: str | None
) -> None:
    """An ack (error None) or nack of a desired-state version."""
    await record_applied_many(ctx, {host_id: (version, error)})


async def record_applied_many(
    ctx: ServiceContext, results: dict[str, tuple[int, str | None]]
) -> None:
    """``record_applied`` for many hosts in one transaction (the gateway batches acks): the
    hosts and their 'apply failed' alarms are read in two queries, before anything is written,
    so the write lock is held for the flush only."""
    async with transaction(ctx.sessions) as s:
        with s.no_autoflush:
            hosts = list(await s.scalars(select(Host).where(Host.id.in_(list(results)))))
            failing = set(
                await s.scalars(
                    select(Alarm.entity).where(
                        Alarm.alarm_id == catalogue.HOST_APPLY_FAILED,
                        Alarm.state == "active",
                        Alarm.entity.in_([f"host={h.name}" for h in hosts]),
                    )
                )
            )
        for host in hosts:
            version, error = results[host.id]
            entity = f"host={host.name}"
            if error is None:
                host.applied_version = max(host.applied_version, version)
                host.last_error = None
                if entity in failing:
                    await alarming.clear_alarm(s, catalogue.HOST_APPLY_FAILED, entity)
            else:
                host.last_error = error
                await alarming.raise_alarm(s, catalogue.HOST_APPLY_FAILED, entity, error)


async def record_host_alarm(
    ctx: ServiceContext, host_id: str, action: str, alarm_id: str, reason: str
) -> None:
    """A host alarm raised or cleared by the host's agent (only host alarm IDs accepted)."""
    if alarm_id not in HOST_ALARMS:
        return
    async with transaction(ctx.sessions) as s:
        host = await s.get(Host, host_id)
        if host is None:
            return
        if action == "raise":
            await alarming.raise_alarm(s, alarm_id, f"host={host.name}", reason)
        else:
            await alarming.clear_alarm(s, alarm_id, f"host={host.name}", reason)


async def record_observed(
    ctx: ServiceContext, host_id: str, observed: dict[str, InstanceReport]
) -> None:
    """Update every instance placed on the host from the agent's full report."""
    await record_observed_many(ctx, {host_id: observed})


async def record_observed_many(
    ctx: ServiceContext, reports: dict[str, dict[str, InstanceReport]]
) -> None:
    """``record_observed`` for many hosts in one transaction (the gateway batches reports)."""
    query = (
        select(Instance)
        .where(Instance.host_id.in_(list(reports)))
        .order_by(Instance.host_id, Instance.name)
    )
    async with transaction(ctx.sessions) as s:
        for instance in list((await s.scalars(query)).unique()):
            await _update(s, instance, reports[str(instance.host_id)].get(instance.id))
        for host_id, report in reports.items():  # instances migrating in (not placed there)
            await migrations.record_progress(s, host_id, report)


async def _update(s: AsyncSession, instance: Instance, seen: InstanceReport | None) -> None:
    entity = f"vnf={instance.name}"
    if instance.desired_state == "deleted":
        if seen is None:
            alarming.log_event(s, entity, "deleted")
            for alarm_id in (catalogue.VNF_FAILED, catalogue.VNF_BINDING_MISMATCH):
                await alarming.clear_alarm(s, alarm_id, entity, "VNF deleted")
            await s.delete(instance)
        return
    if seen is None:
        return  # not applied yet on the node
    boot_id = seen.boot_id
    if boot_id is not None and boot_id != instance.boot_id:
        for vnic in instance.vnics:  # what the guest said belongs to its previous boot
            vnic.guest_name, vnic.guest_mac, vnic.guest_pci = None, None, None
        instance.guest_check = None
        instance.boot_id = boot_id
    # no boot id (no domain: e.g. the source of a live migration just after the switch-over,
    # before the move is recorded) is no new boot: the guest's report of its boot stands, as
    # the destination's console holds none of it
    instance.power_state = seen.power
    if seen.error:
        await _fault(s, instance, seen.error)
        return
    instance.status = _status(instance.desired_state, seen.power)
    if instance.status in ("running", "stopped") and instance.fault:
        instance.fault, instance.fault_at = None, None
        await alarming.clear_alarm(s, catalogue.VNF_FAILED, entity, f"VNF {instance.status}")
    if seen.guest_vnics is not None:
        instance.guest_check = None
        await _record_guest_vnics(s, instance, seen.guest_vnics)
    elif seen.guest_check == UNVERIFIABLE and instance.guest_check != UNVERIFIABLE:
        await _unverifiable(s, instance)


def _status(desired: str, power: str | None) -> str:
    if power == desired:
        return str(power)
    return "building" if desired == "running" else "stopping"


async def _fault(s: AsyncSession, instance: Instance, message: str) -> None:
    if instance.fault != message:
        instance.fault, instance.fault_at = message, utcnow()
    instance.status = "error"
    await alarming.raise_alarm(s, catalogue.VNF_FAILED, f"vnf={instance.name}", message)


async def _unverifiable(s: AsyncSession, instance: Instance) -> None:
    """The guest of this boot cannot tell what it sees: no verdict, so no mismatch alarm (one
    left from an earlier boot no longer holds)."""
    instance.guest_check = UNVERIFIABLE
    alarming.log_event(s, f"vnf={instance.name}", "vNIC binding unverifiable")
    await alarming.clear_alarm(
        s,
        catalogue.VNF_BINDING_MISMATCH,
        f"vnf={instance.name}",
        "the guest reports its vNICs neither on its console nor through a guest agent",
    )


async def _record_guest_vnics(
    s: AsyncSession, instance: Instance, reported: list[GuestVnic]
) -> None:
    """Store what the guest saw at each position and alarm when it is not what was declared."""
    by_order = {r.index: r for r in reported}
    for order, vnic in enumerate(sorted(instance.vnics, key=lambda v: v.index)):
        r = by_order.get(order, GuestVnic(index=order))
        vnic.guest_name, vnic.guest_mac, vnic.guest_pci = r.name, r.mac, r.pci
    entity = f"vnf={instance.name}"
    if binding_verified(instance):
        await alarming.clear_alarm(s, catalogue.VNF_BINDING_MISMATCH, entity, "binding verified")
        return
    wrong = [
        f"nics[{v.index}] declared {v.mac} at {pci_address(v.pci_slot)}, guest saw "
        f"{v.guest_mac or 'nothing'} at {v.guest_pci or 'that position'}"
        for v in instance.vnics
        if not vnic_matches(v)
    ]
    if wrong and len(reported) > 0:
        await alarming.raise_alarm(
            s, catalogue.VNF_BINDING_MISMATCH, entity, f"VNF {instance.name}: " + "; ".join(wrong)
        )


async def record_invalid_message(ctx: ServiceContext, host_id: str, reason: str | None) -> None:
    """Raise (``reason`` given) or clear the host's 'invalid message' alarm (gateway/validating.py
    refused a message of its agent)."""
    async with transaction(ctx.sessions) as s:
        host = await s.get(Host, host_id)
        if host is None:
            return
        entity = f"host={host.name}"
        if reason is None:
            await alarming.clear_alarm(s, catalogue.HOST_INVALID_MESSAGE, entity, "valid hello")
        else:
            await alarming.raise_alarm(s, catalogue.HOST_INVALID_MESSAGE, entity, reason)
