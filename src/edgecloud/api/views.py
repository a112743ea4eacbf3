"""Store objects to response schemas (names instead of ids, derived fields)."""

from __future__ import annotations

from edgecloud.api import schemas
from edgecloud.fm.catalogue import alarm_type
from edgecloud.services.bindings import binding_state, binding_verified
from edgecloud.services.desired import hostname
from edgecloud.services.vnic_addressing import pci_address
from edgecloud.store.models import (
    Alarm,
    AuditRecord,
    Image,
    Instance,
    Migration,
    SoftwarePackage,
    Subnet,
    as_utc,
)


def image(obj: Image) -> schemas.ImageOut:
    return schemas.ImageOut(
        id=obj.id,
        name=obj.name,
        disk_format=obj.disk_format,
        status=obj.status,
        sha256=obj.sha256,
        size=obj.size,
        virtual_size=obj.virtual_size,
        ramdisk=obj.ramdisk.name if obj.ramdisk else None,
        cmdline=obj.cmdline,
        created_at=obj.created_at,
    )


def software(package: SoftwarePackage) -> schemas.SoftwareOut:
    return schemas.SoftwareOut(
        release=package.release,
        kind=package.kind,
        applies_to=package.applies_to,
        reboot_required=package.reboot_required,
        filename=package.filename,
        size=package.size,
        sha256=package.sha256,
        manifest=package.manifest,
        signature=package.signature,
        signer=package.signer,
        created_at=package.created_at,
    )


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
        hostname=hostname(instance),
        recovery_policy=instance.recovery_policy or "recover",
        key_name=instance.key_name,
        customer=instance.customer,
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
                fixed_ips=[
                    schemas.FixedIpOut(
                        ip_address=ip.ip_address, subnet=ip.subnet.name, cidr=ip.subnet.cidr
                    )
                    for ip in v.fixed_ips
                ],
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


def subnet(n: Subnet) -> schemas.SubnetOut:
    return schemas.SubnetOut(
        id=n.id,
        name=n.name,
        network=n.network.name,
        ip_version=n.ip_version,
        cidr=n.cidr,
        gateway_ip=n.gateway_ip,
        allocation_pools=list(n.allocation_pools),
        dns_nameservers=list(n.dns_nameservers),
        host_routes=list(n.host_routes),
        enable_dhcp=n.enable_dhcp,
        ipv6_address_mode=n.ipv6_address_mode,
        dhcp_address=n.dhcp_address,
        created_at=n.created_at,
    )


def migration(obj: Migration) -> schemas.MigrationOut:
    return schemas.MigrationOut(
        id=obj.id,
        vnf=obj.instance_name,
        source_host=obj.source_host.name,
        destination_host=obj.destination_host.name,
        kind=obj.kind,
        memory_copy=obj.memory_copy,
        max_downtime_ms=obj.max_downtime_ms,
        status=obj.status,
        error=obj.error,
        stats=dict(obj.stats or {}),
        created_at=obj.created_at,
        finished_at=obj.finished_at,
    )


def audit_record(obj: AuditRecord) -> schemas.AuditOut:
    return schemas.AuditOut(
        id=obj.id,
        at=as_utc(obj.at),
        actor=obj.actor,
        action=obj.action,
        target=obj.target,
        status=obj.status,
        client=obj.client,
    )
