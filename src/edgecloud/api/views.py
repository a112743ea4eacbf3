"""Store objects to response schemas (names instead of ids, derived fields)."""

from __future__ import annotations

from edgecloud.api import schemas
from edgecloud.fm.catalogue import alarm_type
from edgecloud.services.bindings import binding_state, binding_verified
from edgecloud.services.vnic_addressing import pci_address
from edgecloud.store.models import Alarm, Instance


def vnf(instance: Instance) -> schemas.VnfOut:
    return schemas.VnfOut(
        id=instance.id,
        name=instance.name,
        image=instance.image.name,
        flavor=instance.flavor.name,
        host=instance.host.name if instance.host else None,
        anti_affinity_group=instance.anti_affinity_group,
        metadata=instance.meta or {},
        desired_state=instance.desired_state,
        status=instance.status,
        power_state=instance.power_state,
        boot_id=instance.boot_id,
        fault=instance.fault,
        fault_at=instance.fault_at,
        binding_verified=binding_verified(instance),
        binding=binding_state(instance).value,
        nics=[
            schemas.VnicOut(
                index=v.index,
                network=v.network.name,
                model=v.model,
                mac=v.mac,
                tag=v.tag,
                pci_slot=v.pci_slot,
                pci_address=pci_address(v.pci_slot),
                hostdev_address=v.hostdev_address,
                guest_name=v.guest_name,
                guest_mac=v.guest_mac,
                guest_pci=v.guest_pci,
            )
            for v in instance.vnics
        ],
        created_at=instance.created_at,
        updated_at=instance.updated_at,
    )


def alarm(a: Alarm) -> schemas.AlarmOut:
    kind = alarm_type(a.alarm_id)
    return schemas.AlarmOut(
        id=a.id,
        alarm_id=a.alarm_id,
        title=kind.title,
        severity=a.severity,
        entity=a.entity,
        reason=a.reason,
        state=a.state,
        raised_at=a.raised_at,
        cleared_at=a.cleared_at,
        proposed_action=kind.proposed_action,
    )
