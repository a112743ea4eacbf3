"""Resolving: creation order, properties and outputs of the vCPE template, evaluation errors."""

from __future__ import annotations

from textwrap import dedent

import pytest

from edgecloud.errors import TemplateError
from edgecloud.templates import (
    ResourceDef,
    Template,
    creation_order,
    dependencies,
    load_template,
    resolve_outputs,
    resolve_parameters,
    resolve_properties,
)

ATTRIBUTES = {
    ("vcpe", "host"): "edge-3",
    ("vcpe", "name"): "acme-vcpe",
    ("wan_port", "mac_address"): "fa:16:3e:00:00:01",
}


def refs(name: str) -> object:
    return f"id-{name}"


def attrs(name: str, attribute: str) -> object:
    return ATTRIBUTES[(name, attribute)]


def test_creation_order_follows_implicit_references(vcpe: Template) -> None:
    # wan_port is declared before wan_net but references it with get_resource.
    assert creation_order(vcpe) == ["customer_net", "wan_net", "wan_port", "vcpe", "chain"]


def test_dependencies_combine_depends_on_and_references(vcpe: Template) -> None:
    assert dependencies(vcpe) == {
        "customer_net": [],
        "wan_port": ["wan_net"],
        "wan_net": [],
        "vcpe": ["customer_net", "wan_port"],
        "chain": ["vcpe"],
    }


def test_creation_order_with_depends_on_and_get_attr() -> None:
    template = load_template(
        dedent("""\
        heat_template_version: 2018-08-31
        resources:
          a:
            type: OS::Neutron::Net
            depends_on: [c]
          b:
            type: OS::Neutron::Net
            properties:
              name: {get_attr: [a, name]}
          c:
            type: OS::Neutron::Net
        """)
    )
    assert creation_order(template) == ["c", "a", "b"]


def test_creation_order_rejects_a_hand_built_cycle() -> None:
    template = Template(
        version="2018-08-31",
        resources={
            "a": ResourceDef("a", "OS::Neutron::Net", depends_on=("b",), line=3),
            "b": ResourceDef("b", "OS::Neutron::Net", depends_on=("a",), line=5),
        },
    )
    with pytest.raises(
        TemplateError, match=r"^template line 3: resources.a: dependency cycle: a -> b -> a$"
    ):
        creation_order(template)


def test_creation_order_rejects_a_hand_built_dangling_reference() -> None:
    template = Template(
        version="2018-08-31",
        resources={"a": ResourceDef("a", "OS::Neutron::Net", depends_on=("ghost",))},
    )
    with pytest.raises(TemplateError, match="undeclared resource 'ghost'"):
        creation_order(template)


def test_server_properties_resolve_in_network_order(
    vcpe: Template, vcpe_params: dict[str, object]
) -> None:
    properties = resolve_properties(vcpe.resources["vcpe"], vcpe_params, refs, attrs)
    assert properties == {
        "name": "acme-vcpe",
        "image": "vcpe-2.4",
        "flavor": "vnf.small",
        "networks": [
            {"network": "mgmt", "tag": "mgmt"},
            {"network": "id-customer_net", "tag": "customer", "vif_model": "virtio"},
            {"port": "id-wan_port", "tag": "wan", "vif_model": "sriov-vf", "pci_slot": 6},
        ],
        "metadata": {
            "customer": "acme",
            "syslog_host": "192.0.2.10",
            "dns": "192.0.2.53,198.51.100.53",
            "monitoring": False,
        },
        "scheduler_hints": {"group": "vcpe-anti-affinity"},
    }


def test_net_properties_are_coerced_to_their_kinds(
    vcpe: Template, vcpe_params: dict[str, object]
) -> None:
    properties = resolve_properties(vcpe.resources["customer_net"], vcpe_params, refs, attrs)
    assert properties == {"name": "acme-lan", "segmentation_id": 101, "network_type": "vlan"}


def test_chain_and_port_properties(vcpe: Template, vcpe_params: dict[str, object]) -> None:
    chain = resolve_properties(vcpe.resources["chain"], vcpe_params, refs, attrs)
    assert chain == {"server": "id-vcpe", "customer_nic": 1, "network_nic": 2}
    port = resolve_properties(vcpe.resources["wan_port"], vcpe_params, refs, attrs)
    assert port["network"] == "id-wan_net"
    assert port["binding:vnic_type"] == "direct"


def test_outputs_resolve(vcpe: Template, vcpe_params: dict[str, object]) -> None:
    assert resolve_outputs(vcpe, vcpe_params, refs, attrs) == {
        "vcpe_host": "edge-3",
        "wan_mac": "fa:16:3e:00:00:01",
        "summary": "acme-vcpe on edge-3",
    }


def test_opaque_reference_values_pass_through(
    vcpe: Template, vcpe_params: dict[str, object]
) -> None:
    class NetworkId:
        pass

    network_id = NetworkId()
    port = resolve_properties(vcpe.resources["wan_port"], vcpe_params, lambda _: network_id, attrs)
    assert port["network"] is network_id


PARAMETERIZED = """\
heat_template_version: 2018-08-31
parameters:
  slot: {type: number}
  layout: {type: json}
resources:
  vm:
    type: OS::Nova::Server
    properties:
      image: img
      flavor: small
      networks:
        - network: mgmt
          pci_slot: {get_param: slot}
      metadata:
        first: {get_param: [layout, racks, 0, name]}
        joined: {list_join: ["/", [a, 1, true, null], {get_param: [layout, racks]}]}
"""


def test_get_param_path_and_list_join_of_non_strings() -> None:
    template = load_template(PARAMETERIZED)
    params = resolve_parameters(template, {"slot": "5", "layout": '{"racks": [{"name": "r1"}]}'})
    properties = resolve_properties(template.resources["vm"], params, refs, attrs)
    assert properties["networks"] == [{"network": "mgmt", "pci_slot": 5}]
    assert properties["metadata"] == {"first": "r1", "joined": 'a/1/true//{"name": "r1"}'}


def test_resolved_values_are_checked_against_the_schema() -> None:
    template = load_template(PARAMETERIZED)
    params = resolve_parameters(template, {"slot": 40, "layout": {"racks": [{"name": "r"}]}})
    with pytest.raises(TemplateError) as info:
        resolve_properties(template.resources["vm"], params, refs, attrs)
    assert info.value.field == "resources.vm.properties.networks[0].pci_slot"
    assert str(info.value).startswith("template line 6: ")
    assert "40 is outside 3..31" in str(info.value)


def test_get_param_path_that_does_not_exist() -> None:
    template = load_template(PARAMETERIZED)
    params = resolve_parameters(template, {"slot": 5, "layout": {"racks": []}})
    with pytest.raises(TemplateError, match="no key or index 0") as info:
        resolve_properties(template.resources["vm"], params, refs, attrs)
    assert info.value.field == "resources.vm.properties.metadata.first.get_param"


def test_stack_name_needs_a_value() -> None:
    template = load_template(
        dedent("""\
        heat_template_version: 2018-08-31
        resources:
          net:
            type: OS::Neutron::Net
            properties:
              name: {list_join: ["-", [{get_param: OS::stack_name}, lan]]}
        """)
    )
    net = template.resources["net"]
    named = resolve_parameters(template, {}, stack_name="acme")
    assert resolve_properties(net, named, refs, attrs) == {"name": "acme-lan"}
    with pytest.raises(TemplateError, match="parameter 'OS::stack_name' has no value"):
        resolve_properties(net, resolve_parameters(template, {}), refs, attrs)
