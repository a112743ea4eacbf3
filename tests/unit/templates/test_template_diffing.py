"""plan_update: in-place updates, replacements and their spread, creates, deletes, order."""

from __future__ import annotations

from collections.abc import Callable
from textwrap import dedent

import pytest

from edgecloud.errors import TemplateError
from edgecloud.templates import (
    PlanStep,
    Template,
    UpdatePlan,
    load_template,
    plan_update,
    resolve_parameters,
)

Plan = Callable[..., UpdatePlan]

ALL = ("customer_net", "wan_net", "wan_port", "vcpe", "chain")


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


@pytest.fixture
def plan(vcpe_text: str, vcpe_values: dict[str, object]) -> Plan:
    """Plan from the vCPE template to ``new_text`` (default: the same) with changed values."""

    def make(new_text: str | None = None, **changes: object) -> UpdatePlan:
        old, new = load_template(vcpe_text), load_template(new_text or vcpe_text)
        old_params = resolve_parameters(old, vcpe_values)
        new_params = resolve_parameters(new, {**vcpe_values, **changes})
        return plan_update(old, old_params, new, new_params)

    return make


def test_no_change_leaves_everything_unchanged(plan: Plan) -> None:
    result = plan()
    assert result.unchanged == ALL
    assert result.update_in_place == result.replace == result.create == result.delete == ()
    assert result.steps == ()


def test_flavor_parameter_change_resizes_only_that_server(plan: Plan) -> None:
    result = plan(flavor="vnf.large")
    assert result.update_in_place == ("vcpe",)
    assert result.unchanged == ("customer_net", "wan_net", "wan_port", "chain")
    assert result.replace == result.create == result.delete == ()
    assert result.changed == {"vcpe": ("flavor",)}
    assert result.steps == (PlanStep("update", "vcpe"),)


def test_flavor_change_in_the_template_is_in_place_too(plan: Plan, vcpe_text: str) -> None:
    new = edit(vcpe_text, "flavor: {get_param: flavor}", "flavor: vnf.medium")
    result = plan(new)
    assert result.update_in_place == ("vcpe",)
    assert result.unchanged == ("customer_net", "wan_net", "wan_port", "chain")


def test_metadata_and_name_change_in_place(plan: Plan, vcpe_text: str) -> None:
    new = edit(vcpe_text, "        monitoring: {get_param: monitoring}\n", "")
    new = edit(new, '"vcpe"]]}', '"router"]]}')
    result = plan(new)
    assert result.update_in_place == ("vcpe",)
    assert result.changed["vcpe"] == ("name", "metadata")


def test_image_change_replaces_the_server_and_what_references_it(plan: Plan) -> None:
    result = plan(image="vcpe-2.5")
    assert result.replace == ("vcpe", "chain")
    assert result.unchanged == ("customer_net", "wan_net", "wan_port")
    assert result.changed == {"vcpe": ("image",), "chain": ()}


def test_network_list_change_replaces_server_and_chain_service(plan: Plan, vcpe_text: str) -> None:
    new = edit(
        vcpe_text,
        "        - network: mgmt\n          tag: mgmt\n",
        "        - network: oam\n          tag: mgmt\n",
    )
    result = plan(new)
    assert result.replace == ("vcpe", "chain")
    assert result.update_in_place == ()
    assert result.unchanged == ("customer_net", "wan_net", "wan_port")
    assert result.changed["vcpe"] == ("networks",)


def test_replacement_spreads_transitively_and_steps_are_safe(plan: Plan, vcpe_text: str) -> None:
    new = edit(vcpe_text, 'mac_address: "fa:16:3e:00:00:01"', 'mac_address: "fa:16:3e:00:00:02"')
    result = plan(new)
    assert result.replace == ("wan_port", "vcpe", "chain")
    assert result.unchanged == ("customer_net", "wan_net")
    assert result.steps == (
        PlanStep("create_replacement", "wan_port"),
        PlanStep("create_replacement", "vcpe"),
        PlanStep("create_replacement", "chain"),
        PlanStep("delete_replaced", "chain"),
        PlanStep("delete_replaced", "vcpe"),
        PlanStep("delete_replaced", "wan_port"),
    )


def test_net_name_in_place_but_segmentation_id_replaces(plan: Plan, vcpe_text: str) -> None:
    renamed = plan(edit(vcpe_text, '"lan"]]}', '"inside"]]}'))
    assert renamed.update_in_place == ("customer_net",)
    assert renamed.unchanged == ("wan_net", "wan_port", "vcpe", "chain")
    revlanned = plan(customer_vlan=202)
    assert revlanned.replace == ("customer_net", "vcpe", "chain")
    assert revlanned.unchanged == ("wan_net", "wan_port")


def test_port_network_change_replaces(plan: Plan, vcpe_text: str) -> None:
    new = edit(
        vcpe_text, "network: {get_resource: wan_net}", "network: {get_resource: customer_net}"
    )
    result = plan(new)
    assert result.replace == ("wan_port", "vcpe", "chain")
    assert result.changed["wan_port"] == ("network",)


def test_chain_service_change_replaces_only_it(plan: Plan, vcpe_text: str) -> None:
    new = edit(
        vcpe_text, "customer_nic: 1\n      network_nic: 2", "customer_nic: 2\n      network_nic: 1"
    )
    result = plan(new)
    assert result.replace == ("chain",)
    assert result.unchanged == ("customer_net", "wan_net", "wan_port", "vcpe")


def test_type_change_replaces() -> None:
    old = "heat_template_version: 2018-08-31\nresources:\n  x: {type: OS::Neutron::Net}\n"
    new = dedent("""\
        heat_template_version: 2018-08-31
        resources:
          x: {type: OS::Nova::Server, properties: {image: i, flavor: f}}
        """)
    result = plan_update(load_template(old), {}, load_template(new), {})
    assert result.replace == ("x",)
    assert result.changed == {"x": ("type",)}


def test_removing_resources_deletes_them_in_reverse_dependency_order(
    plan: Plan, vcpe_text: str
) -> None:
    new = vcpe_text.split("  vcpe:\n")[0].split("outputs:")[0]
    result = plan(new)
    assert result.delete == ("chain", "vcpe")
    assert result.unchanged == ("customer_net", "wan_net", "wan_port")
    assert result.steps == (PlanStep("delete", "chain"), PlanStep("delete", "vcpe"))


def test_adding_a_resource_creates_it(plan: Plan, vcpe_text: str) -> None:
    new = edit(
        vcpe_text,
        "\noutputs:",
        "\n  oam_net:\n    type: OS::Neutron::Net\n    properties: {name: oam}\n\noutputs:",
    )
    result = plan(new)
    assert result.create == ("oam_net",)
    assert result.unchanged == ALL
    assert result.steps == (PlanStep("create", "oam_net"),)


def test_creates_come_before_deletes(plan: Plan, vcpe_text: str) -> None:
    new = edit(vcpe_text, "network: {get_resource: wan_net}", "network: {get_resource: wan_net2}")
    new = edit(
        new,
        "\n  wan_net:\n    type: OS::Neutron::Net",
        "\n  wan_net2:\n    type: OS::Neutron::Net",
    )
    result = plan(new)
    assert result.create == ("wan_net2",)
    assert result.delete == ("wan_net",)
    assert result.replace == ("wan_port", "vcpe", "chain")
    actions = [step.action for step in result.steps]
    assert actions.index("delete") > actions.index("create")
    assert result.steps[-1] == PlanStep("delete", "wan_net")


def test_immutable_parameter_cannot_change() -> None:
    text = dedent("""\
        heat_template_version: 2018-08-31
        parameters:
          site: {type: string, immutable: true}
        """)
    template: Template = load_template(text)
    with pytest.raises(TemplateError, match="immutable") as info:
        plan_update(template, {"site": "a"}, template, {"site": "b"})
    assert info.value.field == "parameters.site"
