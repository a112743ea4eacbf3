"""Stacks: HOT templates turned into networks and VNFs, created, updated and deleted as one.

The template engine (edgecloud.templates) is pure; this module maps its resources to edgecloud
objects in ONE transaction per operation, so a create or update that fails on any resource
leaves nothing half-done (the previous state stays: that is the rollback). Resource mapping:

    OS::Neutron::Net            -> a network (name: ``name`` or STACK-RESOURCE)
    OS::Neutron::Port           -> a reserved vNIC identity (network + MAC) a server uses
    OS::Nova::Server            -> a VNF; ``networks`` in order become its vNICs in order
    Edgecloud::Chain::Service   -> which vNICs of a server face the customer / the network
    computed types              -> no site object: attributes from templates/software_configs.py
                                   (RandomString, CloudConfig, MultipartMime, SoftwareConfig,
                                   ServerGroup, None), kept in the row's ``attributes``
    ignored types               -> no site object (SecurityGroup: see docs/templates.md)
    OS::Neutron::Subnet         -> a subnet of the network (services/subnets.py)
    OS::Nova::KeyPair           -> a key pair (given public key, or a new one: its private key
                                   is an attribute only with save_private_key, as Heat)
    a server's fixed IPs (its networks' fixed_ip/subnet, or its ports' fixed_ips), user_data
    (rendered from CloudConfig/MultipartMime when it names them) and key_name -> its VNF's

The request (template, parameters, environment files, files) is checked and expanded by
templates.prepare in a worker thread within a time budget (templates/budget.py), so a
hostile template cannot stall the event loop; anything the site cannot create yet is refused
before the transaction starts, with a sentence naming the resource, its type and the reason.
A stack's subnets and key pairs go with it (subnets also with their network).

Updates follow templates.plan_update: unchanged resources are not touched, a server's flavor
change resizes that server only (it reboots into the new flavor), other changes replace.
Deleting a stack deletes its VNFs; its networks go once the VNFs are gone (finish_deletes).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.errors import Conflict, TemplateError
from edgecloud.services import catalog, keypairs, subnets, vnfs
from edgecloud.services.context import ServiceContext
from edgecloud.services.vnic_addressing import new_mac
from edgecloud.store import instances, repository
from edgecloud.store.database import reading, transaction
from edgecloud.store.models import Instance, KeyPair, Network, Stack, StackResource, Subnet
from edgecloud.templates import (
    Prepared,
    Template,
    creation_order,
    plan_update,
    prepare,
    resolve_outputs,
    resolve_properties,
)
from edgecloud.templates.budget import DEFAULT_SECONDS, within_budget
from edgecloud.templates.resource_types import KEYPAIR, RANDOM_STRING, SUBNET, resource_type
from edgecloud.templates.software_configs import (
    CONFIG_TYPES,
    computed_attributes,
    keypair_attributes,
    server_user_data,
)

NET, PORT, SERVER, CHAIN_SERVICE = (
    "OS::Neutron::Net",
    "OS::Neutron::Port",
    "OS::Nova::Server",
    "Edgecloud::Chain::Service",
)
VNIC_TYPE_MODELS = {"direct": "sriov-vf", "direct-physical": "pci-passthrough"}
CENTRAL = "central"  # Stack.managed_by of a stack central deployed (controller/central_applying.py)
TEMPLATE_BUDGET = DEFAULT_SECONDS  # seconds to check and expand one stack request


@dataclass
class Built:
    """What the resources created so far are, for get_resource / get_attr."""

    refs: dict[str, str] = field(default_factory=dict)
    attrs: dict[str, dict[str, Any]] = field(default_factory=dict)
    instances: list[Instance] = field(default_factory=list)
    configs: dict[str, str] = field(default_factory=dict)  # config resource ref -> its text


async def list_stacks(ctx: ServiceContext, customer: str | None = None) -> list[Stack]:
    """Every stack, or only ``customer``'s (services/authorization.py)."""
    async with reading(ctx.sessions) as s:
        if customer is None:
            return await repository.all_of(s, Stack)
        query = select(Stack).where(Stack.customer == customer).order_by(Stack.name)
        return list(await s.scalars(query))


async def get_stack(ctx: ServiceContext, name: str) -> Stack:
    async with reading(ctx.sessions) as s:
        return await repository.by_name(s, Stack, name, "stack")


async def prepare_request(
    name: str,
    text: str,
    params: Mapping[str, Any],
    files: Mapping[str, str] | None = None,
    environment_files: list[str] | tuple[str, ...] = (),
) -> Prepared:
    """The request checked and expanded in a worker thread within TEMPLATE_BUDGET seconds:
    the event loop keeps serving while a big or hostile template is parsed."""

    def work() -> Prepared:
        with within_budget(TEMPLATE_BUDGET):
            return prepare(
                text, params, stack_name=name, files=files or {},
                environment_files=list(environment_files),
            )  # fmt: skip

    return await asyncio.to_thread(work)


async def create_stack(
    ctx: ServiceContext,
    name: str,
    text: str,
    params: Mapping[str, Any],
    files: Mapping[str, str] | None = None,
    environment_files: list[str] | tuple[str, ...] = (),
    customer: str | None = None,
    managed_by: str | None = None,
) -> Stack:
    """Validate everything, then create every resource in one transaction; the stack and
    its VNFs belong to ``customer`` (None: the site); ``managed_by``: CENTRAL for a stack
    central deployed (only central changes or deletes it then)."""
    prepared = await prepare_request(name, text, params, files, environment_files)
    template, values = prepared.template, prepared.values
    async with transaction(ctx.sessions) as s:
        if await repository.find_by_name(s, Stack, name) is not None:
            raise Conflict(f"stack {name!r} already exists")
        stack = Stack(
            name=name,
            template=text,
            parameters=dict(params),
            files=dict(files or {}),
            environment_files=list(environment_files),
            status="CREATE_COMPLETE",
            resources=[],
            customer=customer,
            managed_by=managed_by,
        )
        s.add(stack)
        built = Built()
        for position, resource in enumerate(creation_order(template)):
            await _create_resource(s, stack, template, values, resource, position, built)
    _notify(ctx, built)
    return await get_stack(ctx, name)


async def _create_resource(
    s: AsyncSession, stack: Stack, template: Template, values: Mapping[str, Any],
    name: str, position: int, built: Built,
) -> None:  # fmt: skip
    definition = template.resources[name]
    props = resolve_properties(
        definition, values, built.refs.__getitem__, lambda r, a: built.attrs[r].get(a)
    )
    if definition.type == PORT and not props.get("mac_address"):
        props["mac_address"] = new_mac()
    physical, attrs = await _materialise(s, stack, name, definition.type, props, built)
    _remember(built, name, definition.type, physical, attrs)
    stack.resources.append(
        StackResource(
            name=name,
            type=definition.type,
            position=position,
            physical_id=physical,
            properties=props,
            attributes=attrs if _keeps_attributes(definition.type) else {},
        )
    )


def _remember(built: Built, name: str, kind: str, physical: str, attrs: dict[str, Any]) -> None:
    built.refs[name], built.attrs[name] = physical, attrs
    if kind in CONFIG_TYPES:
        built.configs[physical] = str(attrs.get("config", ""))


def _keeps_attributes(kind: str) -> bool:
    rtype = resource_type(kind)
    return (rtype is not None and rtype.role in ("computed", "ignored")) or kind in (
        KEYPAIR,
        SUBNET,
    )


async def _materialise(
    s: AsyncSession, stack: Stack, name: str, kind: str, props: dict[str, Any], built: Built
) -> tuple[str, dict[str, Any]]:
    """Create the edgecloud object of one resource; returns (reference, attributes)."""
    rtype = resource_type(kind)
    if rtype is not None and rtype.role in ("computed", "ignored"):
        return _computed(stack, name, kind, props, built, None)
    if kind == SUBNET:
        subnet = await subnets.insert_subnet(s, _subnet_request(stack, name, props))
        return subnet.name, _subnet_attributes(subnet)
    if kind == KEYPAIR:
        attrs = keypair_attributes(props)
        await keypairs.insert_keypair(s, str(props["name"]), str(attrs["public_key"]))
        return str(props["name"]), attrs
    if kind == NET:
        fields = {
            "name": await _free_name(
                s,
                Network,
                props.get("name") or _object_name(stack.name, name),
                lambda net: net.name in (stack.orphaned_networks or []),
            ),
            "kind": props.get("network_type", "vlan"),
            "segmentation_id": props.get("segmentation_id"),
        }
        network = await catalog.insert_network(s, fields)
        return network.name, {"name": network.name, "id": network.id}
    if kind == PORT:
        port_id = f"port-{stack.name}-{name}"
        attrs = {
            "id": port_id,
            "mac_address": props["mac_address"].lower(),
            "network": props["network"],
            "fixed_ips": [
                {"ip_address": ip.get("ip_address"), "subnet": ip.get("subnet")}
                for ip in props.get("fixed_ips") or []
            ],
        }
        attrs["model"] = VNIC_TYPE_MODELS.get(props.get("binding:vnic_type", "normal"), "virtio")
        return port_id, attrs
    if kind == SERVER:
        request = _vnf_request(stack, name, props, built)
        request["customer"] = stack.customer
        request["name"] = await _free_name(
            s, Instance, request["name"], lambda vnf: vnf.desired_state == "deleted"
        )
        instance = await vnfs.insert_vnf(s, request)
        built.instances.append(instance)
        attrs = {"id": instance.id, "name": instance.name, "host": None, "status": instance.status}
        return instance.name, attrs
    if kind == CHAIN_SERVICE:
        server = built.attrs[_by_ref(built, props["server"])]
        attrs = {
            "server": server["name"],
            "instance_id": server["id"],
            "customer_port": props["customer_nic"],
            "network_port": props["network_nic"],
        }
        return f"service-{stack.name}-{name}", attrs
    raise TemplateError(
        f"resources.{name}.type: {kind} cannot be created", field=f"resources.{name}.type"
    )


def _computed(
    stack: Stack,
    name: str,
    kind: str,
    props: dict[str, Any],
    built: Built,
    previous: Mapping[str, Any] | None,
) -> tuple[str, dict[str, Any]]:
    """A resource the engine computes (or ignores): its reference and attributes."""
    rtype = resource_type(kind)
    if rtype is not None and rtype.role == "ignored":
        return f"{stack.name}-{name}", {}
    attrs = computed_attributes(kind, f"{stack.name}-{name}", props, built.configs, previous)
    if kind == RANDOM_STRING:
        return str(attrs["value"]), attrs  # Heat: get_resource of a RandomString is its value
    if "name" in attrs:
        return str(attrs["name"]), attrs
    return f"config-{stack.name}-{name}", attrs


def _subnet_request(stack: Stack, name: str, props: dict[str, Any]) -> dict[str, Any]:
    request = {
        "name": props.get("name") or _object_name(stack.name, name),
        "network": props["network"],
        "cidr": props["cidr"],
        "ip_version": props.get("ip_version", 4),
        "allocation_pools": props.get("allocation_pools"),
        "dns_nameservers": props.get("dns_nameservers"),
        "host_routes": props.get("host_routes"),
        "enable_dhcp": props.get("enable_dhcp", True),
        "ipv6_address_mode": props.get("ipv6_address_mode"),
    }
    if "gateway_ip" in props:  # Heat: absent -> the first address; null -> no gateway
        request["gateway_ip"] = props["gateway_ip"]
    return request


def _subnet_attributes(subnet: Subnet) -> dict[str, Any]:
    return {
        "id": subnet.id,
        "name": subnet.name,
        "network_id": subnet.network_id,
        "cidr": subnet.cidr,
        "ip_version": subnet.ip_version,
        "gateway_ip": subnet.gateway_ip,
        "allocation_pools": list(subnet.allocation_pools or []),
        "dns_nameservers": list(subnet.dns_nameservers or []),
        "host_routes": list(subnet.host_routes or []),
        "enable_dhcp": subnet.enable_dhcp,
    }


async def _free_name(
    s: AsyncSession, model: type[Network] | type[Instance], wanted: str, leaving: Any
) -> str:
    """``wanted``, or when an object this update replaces still holds that name (it goes once
    its host removed it), ``wanted-r2``, ``wanted-r3``..."""
    name, n = wanted, 1
    while (found := await repository.find_by_name(s, model, name)) is not None and leaving(found):
        n += 1
        name = f"{wanted[:59]}-r{n}"
    return name


def _vnf_request(stack: Stack, name: str, props: dict[str, Any], built: Built) -> dict[str, Any]:
    """What vnfs.insert_vnf takes: vNICs in order (with their fixed IPs), user data, key."""
    nics = []
    for item in props.get("networks") or []:
        nic: dict[str, Any] = {"tag": item.get("tag"), "pci_slot": item.get("pci_slot")}
        if item.get("port"):
            port = built.attrs[_by_ref(built, item["port"])]
            nic.update(network=port["network"], mac=port["mac_address"], model=port["model"])
            nic["fixed_ips"] = list(port.get("fixed_ips") or []) or None
        else:
            nic["network"] = item["network"]
            if item.get("fixed_ip") or item.get("subnet"):
                nic["fixed_ips"] = [
                    {"ip_address": item.get("fixed_ip"), "subnet": item.get("subnet")}
                ]
        if item.get("vif_model"):
            nic["model"] = item["vif_model"]
        nics.append({k: v for k, v in nic.items() if v is not None})
    hints = props.get("scheduler_hints") or {}
    return {
        "name": props.get("name") or _object_name(stack.name, name),
        "image": props["image"],
        "flavor": props["flavor"],
        "nics": nics,
        "anti_affinity_group": hints.get("group"),
        "metadata": _string_map(props.get("metadata")),
        "user_data": server_user_data(props, built.configs),
        "key_name": props.get("key_name"),
        "recovery_policy": props.get("recovery_policy"),
    }


def _string_map(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _by_ref(built: Built, ref: str) -> str:
    return next(name for name, physical in built.refs.items() if physical == ref)


def _object_name(stack: str, resource: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "-", f"{stack}-{resource}")
    return name[:63]


def _notify(ctx: ServiceContext, built: Built) -> None:
    for instance in built.instances:
        vnfs.notify(ctx, instance)


# update ----------------------------------------------------------------------------------------
async def update_stack(
    ctx: ServiceContext,
    name: str,
    text: str,
    params: Mapping[str, Any],
    files: Mapping[str, str] | None = None,
    environment_files: list[str] | tuple[str, ...] = (),
    by: str | None = None,
) -> Stack:
    """Change a stack to a new template: only what changed is touched, all or nothing.
    ``by``: CENTRAL when central changes a stack it deployed (nobody else may)."""
    prepared = await prepare_request(name, text, params, files, environment_files)
    new, new_values = prepared.template, prepared.values
    current_stack = await get_stack(ctx, name)
    old_prepared = await _stored_request(current_stack)
    async with transaction(ctx.sessions) as s:
        stack = await repository.by_name(s, Stack, name, "stack")
        _changeable(stack, by)
        if stack.updated_at != current_stack.updated_at:
            raise Conflict(f"stack {name!r} changed while this update was being checked; retry")
        old, old_values = old_prepared.template, old_prepared.values
        plan = plan_update(old, old_values, new, new_values)
        built, touched = await _rebuild_refs(s, stack), []
        current = {r.name: r for r in stack.resources}
        for resource in plan.delete + plan.replace:  # gone or replaced: remove the old objects
            touched += await _remove_resource(s, stack, current.pop(resource))
        for position, resource in enumerate(creation_order(new)):
            if resource in plan.update_in_place:
                touched += await _update_in_place(
                    s, stack, new, new_values, resource, current[resource], built
                )
            elif resource in plan.create or resource in plan.replace:
                await _create_resource(s, stack, new, new_values, resource, position, built)
            current_row = next((r for r in stack.resources if r.name == resource), None)
            if current_row is not None:
                current_row.position = position
        stack.template, stack.parameters = text, dict(params)
        stack.files, stack.environment_files = dict(files or {}), list(environment_files)
        stack.status, stack.status_reason = "UPDATE_COMPLETE", _summary(plan)
    for instance in [*built.instances, *touched]:
        vnfs.notify(ctx, instance)
    return await get_stack(ctx, name)


def _summary(plan: Any) -> str:
    parts = [
        f"{len(getattr(plan, k))} {k.replace('_', ' ')}"
        for k in ("unchanged", "update_in_place", "replace", "create", "delete")
    ]
    return ", ".join(parts)


async def _rebuild_refs(s: AsyncSession, stack: Stack) -> Built:
    """References and attributes of the stack's existing resources."""
    built = Built()
    for row in stack.resources:
        _remember(built, row.name, row.type, row.physical_id or "", await _attributes(s, row))
    return built


async def _stored_request(stack: Stack) -> Prepared:
    """The stack's current request, expanded again (its template, parameters and files)."""
    return await prepare_request(
        stack.name, stack.template, stack.parameters, stack.files or {},
        stack.environment_files or [],
    )  # fmt: skip


async def _attributes(s: AsyncSession, row: StackResource) -> dict[str, Any]:
    props = row.properties or {}
    if _keeps_attributes(row.type):
        return dict(row.attributes or {})
    if row.type == NET:
        network = await repository.find_by_name(s, Network, row.physical_id or "")
        return {"name": row.physical_id, "id": network.id if network else None}
    if row.type == PORT:
        model = VNIC_TYPE_MODELS.get(str(props.get("binding:vnic_type", "normal")), "virtio")
        return {
            "id": row.physical_id,
            "mac_address": str(props.get("mac_address", "")).lower(),
            "network": props.get("network"),
            "model": model,
        }
    if row.type == SERVER:
        instance = await repository.find_by_name(s, Instance, row.physical_id or "")
        if instance is None:
            return {"name": row.physical_id}
        return {
            "id": instance.id,
            "name": instance.name,
            "host": instance.host.name if instance.host else None,
            "status": instance.status,
        }
    return {}


async def _update_in_place(
    s: AsyncSession, stack: Stack, template: Template, values: Mapping[str, Any],
    name: str, row: StackResource, built: Built,
) -> list[Instance]:  # fmt: skip
    props = resolve_properties(
        template.resources[name], values, built.refs.__getitem__, lambda r, a: built.attrs[r].get(a)
    )
    if row.type == PORT and not props.get("mac_address"):
        props["mac_address"] = (row.properties or {}).get("mac_address")
    if _keeps_attributes(row.type):
        attrs = computed_attributes(row.type, row.name, props, built.configs, None)
        row.attributes = attrs
        _remember(built, name, row.type, row.physical_id or "", attrs)
    touched = []
    if row.type == SERVER:
        instance = await repository.by_name(s, Instance, row.physical_id or "", "VNF")
        if props.get("flavor") != instance.flavor.name:
            await vnfs.resize(s, instance, str(props["flavor"]))
        instance.meta = _string_map(props.get("metadata"))
        touched.append(instance)
    row.properties = props
    return touched


async def _remove_resource(s: AsyncSession, stack: Stack, row: StackResource) -> list[Instance]:
    """Delete the object of one resource (VNFs via their host; networks once unused)."""
    stack.resources.remove(row)
    if row.type == SERVER:
        instance = await repository.find_by_name(s, Instance, row.physical_id or "")
        if instance is not None:
            await vnfs.mark_deleted(s, instance)
            return [instance]
    if row.type == NET:
        await _orphan_network(s, stack, row.physical_id or "")
    if row.type in (SUBNET, KEYPAIR):
        await _drop_owned(s, row)
    return []


async def _drop_owned(s: AsyncSession, row: StackResource) -> None:
    """Delete the subnet or key pair a stack resource made (already gone: nothing to do)."""
    model: type[Subnet] | type[KeyPair] = Subnet if row.type == SUBNET else KeyPair
    found = await repository.find_by_name(s, model, row.physical_id or "")
    if found is not None:
        await s.delete(found)
        await s.flush()


async def _orphan_network(s: AsyncSession, stack: Stack, network: str) -> None:
    """Remember a network to delete once no VNF uses it any more (finish_deletes)."""
    stack.orphaned_networks = [*(stack.orphaned_networks or []), network]


def _changeable(stack: Stack, by: str | None) -> None:
    if stack.status.startswith("DELETE"):
        raise Conflict(f"stack {stack.name!r} is being deleted")
    if stack.managed_by is not None and stack.managed_by != by:
        raise Conflict(
            f"stack {stack.name!r} was deployed by {stack.managed_by}: change or remove it "
            f"there (edgecloud central deploy / undeploy)"
        )


# delete ----------------------------------------------------------------------------------------
async def delete_stack(ctx: ServiceContext, name: str, by: str | None = None) -> Stack:
    """Delete the stack's VNFs now; its networks and the stack go once the VNFs are gone.
    ``by``: CENTRAL when central removes a stack it deployed (nobody else may)."""
    touched: list[Instance] = []
    async with transaction(ctx.sessions) as s:
        stack = await repository.by_name(s, Stack, name, "stack")
        if stack.managed_by is not None and stack.managed_by != by:
            _changeable(stack, by)
        stack.status, stack.status_reason = "DELETE_IN_PROGRESS", "waiting for its VNFs to go"
        for row in stack.resources:
            if row.type == SERVER:
                instance = await repository.find_by_name(s, Instance, row.physical_id or "")
                if instance is not None and instance.desired_state != "deleted":
                    await vnfs.mark_deleted(s, instance)
                    touched.append(instance)
    for instance in touched:
        vnfs.notify(ctx, instance)
    await finish_deletes(ctx)
    return stack


async def finish_deletes(ctx: ServiceContext) -> list[str]:
    """Remove stacks being deleted whose VNFs are gone, and networks no VNF uses any more.

    One at a time: the stack sweeper and a stack delete both call this, and two transactions
    deleting the same network made the later one fail (its DELETE matched no row)."""
    done = []
    async with ctx.lock("stack-finish-deletes"), transaction(ctx.sessions) as s:
        for stack in await repository.all_of(s, Stack):
            done += await _finish_stack(s, stack)
    return done


async def _finish_stack(s: AsyncSession, stack: Stack) -> list[str]:
    deleting = stack.status == "DELETE_IN_PROGRESS"
    networks = list(stack.orphaned_networks or [])
    if deleting:
        servers = [r.physical_id for r in stack.resources if r.type == SERVER]
        if any([await repository.find_by_name(s, Instance, n or "") for n in servers]):
            return []
        networks += [r.physical_id or "" for r in stack.resources if r.type == NET]
        for row in stack.resources:
            if row.type in (SUBNET, KEYPAIR):
                await _drop_owned(s, row)
    left = [n for n in networks if not await _drop_network_if_unused(s, str(n))]
    if deleting:
        await s.delete(stack)
        return [stack.name]
    if networks:
        stack.orphaned_networks = left
    return []


async def _drop_network_if_unused(s: AsyncSession, name: str) -> bool:
    network = await repository.find_by_name(s, Network, name)
    if network is None:
        return True
    if await instances.network_users(s, network.id):
        return False
    await s.delete(network)
    return True


# outputs -----------------------------------------------------------------------------------------
async def outputs(ctx: ServiceContext, stack: Stack) -> dict[str, Any]:
    """The stack's outputs, evaluated against its resources as they are now."""
    try:
        prepared = await _stored_request(stack)
    except TemplateError as exc:
        return {"error": f"outputs not available: {exc}"}
    template, values = prepared.template, prepared.values
    async with transaction(ctx.sessions) as s:
        built = await _rebuild_refs(s, stack)
    try:
        return resolve_outputs(
            template, values, built.refs.__getitem__, lambda r, a: built.attrs[r].get(a)
        )
    except (KeyError, TemplateError) as exc:
        return {"error": f"outputs not available: {exc}"}


async def resource_states(ctx: ServiceContext, stack: Stack) -> list[dict[str, Any]]:
    """Each resource with the state of the object it became."""
    rows = []
    async with transaction(ctx.sessions) as s:
        for row in stack.resources:
            state = "CREATE_COMPLETE"
            if row.type == SERVER:
                instance = await repository.find_by_name(s, Instance, row.physical_id or "")
                state = f"VNF {instance.status}" if instance else "VNF gone"
            rows.append(
                {"name": row.name, "type": row.type, "physical_id": row.physical_id, "state": state}
            )
    return rows


async def stack_of_instance(s: AsyncSession, instance_name: str) -> Stack | None:
    """The stack a VNF belongs to, if any."""
    query = select(StackResource).where(
        StackResource.type == SERVER, StackResource.physical_id == instance_name
    )
    row = (await s.scalars(query)).first()
    return await s.get(Stack, row.stack_id) if row else None
