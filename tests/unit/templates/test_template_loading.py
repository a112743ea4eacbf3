"""Loading: the vCPE template loads; every kind of rejection names its line and path."""

from __future__ import annotations

from textwrap import dedent

import pytest

from edgecloud.errors import InvalidInput, TemplateError
from edgecloud.templates import HOT_VERSIONS, Template, load_template


def rejected(text: str) -> TemplateError:
    with pytest.raises(TemplateError) as info:
        load_template(dedent(text))
    return info.value


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line of ``text`` (dedented) that contains ``needle``."""
    for number, line in enumerate(dedent(text).splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in text")


def assert_rejected(text: str, field: str | None, needle: str, *words: str) -> TemplateError:
    error = rejected(text)
    assert error.field == field
    assert str(error).startswith(f"template line {line_of(text, needle)}: ")
    for word in words:
        assert word in str(error)
    return error


# --- the realistic template ------------------------------------------------------------


def test_vcpe_template_loads(vcpe: Template) -> None:
    assert vcpe.version == "2018-08-31"
    assert vcpe.description == "vCPE service for one customer"
    assert list(vcpe.resources) == ["customer_net", "wan_port", "wan_net", "vcpe", "chain"]
    assert vcpe.resources["vcpe"].type == "OS::Nova::Server"
    assert vcpe.resources["chain"].type == "Edgecloud::Chain::Service"
    assert list(vcpe.outputs) == ["vcpe_host", "wan_mac", "summary"]
    assert vcpe.outputs["vcpe_host"].description == "Where the vCPE runs"
    assert vcpe.source == "vcpe.yaml"


def test_vcpe_parameter_definitions(vcpe: Template) -> None:
    customer = vcpe.parameters["customer"]
    assert customer.type == "string"
    assert customer.default is None
    assert [c.kind for c in customer.constraints] == ["length", "allowed_pattern"]
    assert customer.constraints[1].description == "lower-case letters, digits and dashes"
    assert vcpe.parameters["dns_servers"].default == ["192.0.2.53", "198.51.100.53"]
    assert vcpe.parameters["monitoring"].default is False
    assert vcpe.parameters["admin_password"].hidden


def test_resource_lines_and_raw_properties(vcpe_text: str, vcpe: Template) -> None:
    vcpe_def = vcpe.resources["vcpe"]
    assert vcpe_def.line == line_of(vcpe_text, "  vcpe:")
    assert vcpe_def.properties["flavor"] == {"get_param": "flavor"}
    assert vcpe_def.depends_on == ()


def test_every_listed_version_loads() -> None:
    for version in HOT_VERSIONS:
        assert load_template(f"heat_template_version: {version}\n").version == version


def test_depends_on_as_string_or_list() -> None:
    template = load_template(
        dedent("""\
        heat_template_version: 2015-04-30
        resources:
          a: {type: OS::Neutron::Net}
          b: {type: OS::Neutron::Net, depends_on: a}
          c: {type: OS::Neutron::Net, depends_on: [a, b]}
        """)
    )
    assert template.resources["b"].depends_on == ("a",)
    assert template.resources["c"].depends_on == ("a", "b")


def test_template_error_is_invalid_input() -> None:
    assert issubclass(TemplateError, InvalidInput)


# --- YAML and top level ----------------------------------------------------------------


def test_invalid_yaml_names_the_line() -> None:
    text = """\
    heat_template_version: 2018-08-31
    resources:
      a: {type: OS::Neutron::Net
    """
    error = rejected(text)
    assert str(error).startswith("template line 4: invalid YAML")


def test_empty_and_non_mapping_templates() -> None:
    assert "empty" in str(rejected(""))
    assert "mapping" in str(rejected("- just\n- a list\n"))


def test_duplicate_key() -> None:
    text = """\
    heat_template_version: 2018-08-31
    resources:
      a: {type: OS::Neutron::Net}
      a: {type: OS::Neutron::Port}
    """
    error = rejected(text)
    assert error.field == "resources.a"
    assert str(error).startswith("template line 4: ") and "duplicate key" in str(error)


def test_missing_version() -> None:
    error = rejected("description: no version\n")
    assert error.field == "heat_template_version"
    assert "missing" in str(error)


def test_unknown_version() -> None:
    text = """\
    description: too new
    heat_template_version: 2031-01-01
    """
    assert_rejected(text, "heat_template_version", "2031", "unknown HOT version '2031-01-01'")


def test_unknown_top_level_key() -> None:
    text = """\
    heat_template_version: 2018-08-31
    mappings:
      never: false
    """
    assert_rejected(text, "mappings", "mappings:", "unknown top-level key")


def test_custom_source_name_in_message() -> None:
    with pytest.raises(TemplateError, match=r"^stack vcpe line 1: "):
        load_template("heat_template_version: 1999-01-01\n", source="stack vcpe")


# --- resources -------------------------------------------------------------------------


def test_unknown_resource_type() -> None:
    text = """\
    heat_template_version: 2018-08-31
    resources:
      fw:
        type: OS::Nova::Banana
    """
    error = assert_rejected(text, "resources.fw.type", "Banana")
    assert str(error).startswith(
        "template line 4: resources.fw.type: unknown resource type 'OS::Nova::Banana'"
    )


def test_unknown_resource_key() -> None:
    text = """\
    heat_template_version: 2018-08-31
    resources:
      net:
        type: OS::Neutron::Net
        Properties: {}
    """
    assert_rejected(text, "resources.net.Properties", "Properties", "unknown resource key")


def test_unknown_property() -> None:
    text = """\
    heat_template_version: 2018-08-31
    resources:
      net:
        type: OS::Neutron::Net
        properties:
          name: lan
          colour: blue
    """
    assert_rejected(
        text, "resources.net.properties.colour", "colour", "unknown property for OS::Neutron::Net"
    )


def test_missing_required_property() -> None:
    text = """\
    heat_template_version: 2018-08-31
    resources:
      vm:
        type: OS::Nova::Server
        properties:
          flavor: small
    """
    assert_rejected(
        text, "resources.vm.properties.image", "properties:", "missing required property"
    )


def test_literal_property_of_wrong_kind_or_value() -> None:
    base = """\
    heat_template_version: 2018-08-31
    resources:
      net:
        type: OS::Neutron::Net
        properties:
          {line}
    """
    cases = {
        "segmentation_id: [1]": ("segmentation_id", "must be an integer, not a list"),
        "segmentation_id: 5000": ("segmentation_id", "outside 1..4094"),
        "network_type: vxlan": ("network_type", "'vxlan' is not one of: vlan, flat"),
    }
    for line, (prop, words) in cases.items():
        text = base.format(line=line)
        assert_rejected(text, f"resources.net.properties.{prop}", line, words)


def test_networks_entries_are_checked() -> None:
    base = """\
    heat_template_version: 2018-08-31
    resources:
      vm:
        type: OS::Nova::Server
        properties:
          image: img
          flavor: small
          networks:
            - network: mgmt
            - {entry}
    """
    cases = {
        "tag: lonely": ("networks[1]", "give exactly one of: network, port"),
        "{network: a, vif_model: ne2000}": ("networks[1].vif_model", "'ne2000' is not one of"),
        "{network: a, pci_slot: 2}": ("networks[1].pci_slot", "outside 3..31"),
        "{network: a, fixed_ip: 10.0.0.300}": ("networks[1].fixed_ip", "not an IPv4 or IPv6"),
        "{network: a, floating_ip: 10.0.0.1}": ("networks[1].floating_ip", "unknown key"),
        "{port: some-port}": ("networks[1].port", "must be {get_resource: <a OS::Neutron::Port"),
    }
    for entry, (field, words) in cases.items():
        text = base.format(entry=entry)
        error = rejected(text)
        assert error.field == f"resources.vm.properties.{field}", entry
        assert words in str(error), entry
        assert str(error).startswith(f"template line {line_of(text, entry)}: "), entry


def test_get_resource_of_the_wrong_type() -> None:
    text = """\
    heat_template_version: 2018-08-31
    resources:
      vm:
        type: OS::Nova::Server
        properties: {image: img, flavor: small}
      port:
        type: OS::Neutron::Port
        properties:
          network: {get_resource: vm}
    """
    assert_rejected(
        text,
        "resources.port.properties.network",
        "network:",
        "'vm' is a OS::Nova::Server, not a OS::Neutron::Net",
    )


CHAIN = """\
heat_template_version: 2018-08-31
resources:
  vm:
    type: OS::Nova::Server
    properties:
      image: img
      flavor: small
      networks: [{{network: a}}, {{network: b}}]
  chain:
    type: Edgecloud::Chain::Service
    properties:
      server: {server}
      customer_nic: {customer}
      network_nic: {network}
"""


def test_chain_service_nic_index_out_of_range() -> None:
    text = CHAIN.format(server="{get_resource: vm}", customer=0, network=2)
    assert_rejected(
        text, "resources.chain.properties.network_nic", "network_nic", "2 is out of range"
    )


def test_chain_service_nics_must_differ() -> None:
    text = CHAIN.format(server="{get_resource: vm}", customer=1, network=1)
    assert_rejected(text, "resources.chain.properties.network_nic", "network_nic", "must differ")


def test_chain_service_server_must_be_a_server_of_the_template() -> None:
    text = CHAIN.format(server="vm", customer=0, network=1)
    assert_rejected(text, "resources.chain.properties.server", "server:", "get_resource")


# --- parameter definitions -------------------------------------------------------------

PARAMETER = """\
heat_template_version: 2018-08-31
parameters:
  size:
    {body}
"""


@pytest.mark.parametrize(
    ("body", "field", "needle", "words"),
    [
        ("type: integer", "parameters.size.type", "type:", "type must be one of"),
        ("{type: string, colour: red}", "parameters.size.colour", "colour", "unknown key"),
        (
            "{type: number, constraints: [{range: {min: 5, max: 1}}]}",
            "parameters.size.constraints[0].range",
            "range",
            "min is greater than max",
        ),
        (
            "{type: number, constraints: [{length: {min: 1}}]}",
            "parameters.size.constraints[0].length",
            "length",
            "does not apply to a number parameter",
        ),
        (
            "{type: string, constraints: [{wobble: 1}]}",
            "parameters.size.constraints[0]",
            "wobble",
            "exactly one of",
        ),
        (
            "{type: string, constraints: [{allowed_pattern: '[a-'}]}",
            "parameters.size.constraints[0].allowed_pattern",
            "allowed_pattern",
            "invalid regular expression",
        ),
        (
            "{type: number, default: 7, constraints: [{range: {max: 5}}]}",
            "parameters.size.default",
            "default",
            "breaks a constraint: 7 must be at most 5",
        ),
        ("{type: number, default: big}", "parameters.size.default", "default", "is not a number"),
        ("{type: string, hidden: sometimes}", "parameters.size.hidden", "hidden", "true or false"),
        (
            "{type: number, constraints: [{modulo: {step: 0, offset: 0}}]}",
            "parameters.size.constraints[0].modulo.step",
            "modulo",
            "step must not be 0",
        ),
    ],
)
def test_bad_parameter_definitions(body: str, field: str, needle: str, words: str) -> None:
    text = PARAMETER.format(body=body)
    assert_rejected(text, field, needle, words)


def test_parameter_group_naming_an_undeclared_parameter() -> None:
    text = """\
    heat_template_version: 2018-08-31
    parameter_groups:
      - label: main
        parameters:
          - ghost
    """
    assert_rejected(text, "parameter_groups[0].parameters[0]", "ghost", "not declared")


# --- references ------------------------------------------------------------------------

REFERENCE = """\
heat_template_version: 2018-08-31
parameters:
  name: {{type: string}}
resources:
  net:
    type: OS::Neutron::Net
  port:
    type: OS::Neutron::Port
    properties:
      network: {value}
outputs:
  mac:
    value: {{get_attr: [port, mac_address]}}
"""


@pytest.mark.parametrize(
    ("value", "field", "words"),
    [
        ("{get_param: nope}", "get_param", "parameter 'nope' is not declared"),
        ("{get_resource: nope}", "get_resource", "resource 'nope' is not declared"),
        ("{get_attr: [nope, id]}", "get_attr", "resource 'nope' is not declared"),
        ("{get_attr: [net, colour]}", "get_attr", "OS::Neutron::Net has no attribute 'colour'"),
    ],
)
def test_references_to_undeclared_things(value: str, field: str, words: str) -> None:
    text = REFERENCE.format(value=value)
    assert_rejected(text, f"resources.port.properties.network.{field}", "network:", words)


def test_depends_on_an_undeclared_resource() -> None:
    text = """\
    heat_template_version: 2018-08-31
    resources:
      net:
        type: OS::Neutron::Net
        depends_on:
          - ghost
    """
    assert_rejected(
        text, "resources.net.depends_on[0]", "ghost", "resource 'ghost' is not declared"
    )


def test_output_references_are_checked_too() -> None:
    text = """\
    heat_template_version: 2018-08-31
    resources:
      net: {type: OS::Neutron::Net}
    outputs:
      where:
        value: {get_attr: [net, host]}
    """
    assert_rejected(text, "outputs.where.value.get_attr", "value:", "has no attribute 'host'")


def test_output_without_value() -> None:
    text = """\
    heat_template_version: 2018-08-31
    outputs:
      nothing:
        description: forgot the value
    """
    assert_rejected(text, "outputs.nothing", "nothing:", "needs a value")


# --- malformed intrinsic functions -----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "field", "words"),
    [
        ("{get_attr: [net]}", "get_attr", "get_attr takes [resource, attribute"),
        ("{get_resource: [net]}", "get_resource", "get_resource takes a resource name"),
        ("{get_param: [name, 0]}", "get_param", "parameter 'name' is a string and has no keys"),
        ("{get_param: {name: x}}", "get_param", "get_param takes a parameter name"),
        ("{list_join: [',']}", "list_join", "list_join takes [delimiter, list"),
        ("{list_join: [',', oops]}", "list_join[1]", "list_join joins lists"),
        ("{list_join: [1, [a]]}", "list_join[0]", "delimiter must be a string"),
        (
            "{str_replace: {template: x}}",
            "str_replace",
            "str_replace takes a map with template (a string) and params (a map)",
        ),
        ("{'Fn::Join': [',', [a]]}", "Fn::Join", "'Fn::Join' is not supported"),
    ],
)
def test_malformed_intrinsic_functions(value: str, field: str, words: str) -> None:
    text = REFERENCE.format(value=value)
    assert_rejected(text, f"resources.port.properties.network.{field}", "network:", words)


def test_function_nested_in_a_list_join_is_checked() -> None:
    text = """\
    heat_template_version: 2018-08-31
    resources:
      net:
        type: OS::Neutron::Net
        properties:
          name:
            list_join:
              - "-"
              - - a
                - {get_param: missing}
    """
    assert_rejected(
        text,
        "resources.net.properties.name.list_join[1][1].get_param",
        "missing",
        "parameter 'missing' is not declared",
    )


# --- cycles ----------------------------------------------------------------------------


def test_depends_on_cycle_is_named() -> None:
    text = """\
    heat_template_version: 2018-08-31
    resources:
      a:
        type: OS::Neutron::Net
        depends_on: b
      b:
        type: OS::Neutron::Net
        depends_on: a
    """
    assert_rejected(text, "resources.a", "a:", "dependency cycle: a -> b -> a")


def test_cycle_through_implicit_references() -> None:
    text = """\
    heat_template_version: 2018-08-31
    resources:
      net:
        type: OS::Neutron::Net
        depends_on: vm
      port:
        type: OS::Neutron::Port
        properties:
          network: {get_resource: net}
      vm:
        type: OS::Nova::Server
        properties:
          image: img
          flavor: small
          networks: [{port: {get_resource: port}}]
    """
    assert_rejected(text, "resources.net", "net:", "dependency cycle: net -> vm -> port -> net")


def test_self_dependency_is_a_cycle() -> None:
    text = """\
    heat_template_version: 2018-08-31
    resources:
      a:
        type: OS::Neutron::Net
        properties:
          name: {get_attr: [a, id]}
    """
    assert_rejected(text, "resources.a", "a:", "dependency cycle: a -> a")


def test_alias_bombs_are_refused() -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    text = "heat_template_version: 2018-08-31\nparameters:\n  bomb:\n    type: json\n"
    text += "    default:\n" + "\n".join(f"      {line}" for line in levels) + "\n"
    with pytest.raises(TemplateError, match="more than 100000 values"):
        load_template(text)


def test_self_referencing_alias_is_refused() -> None:
    with pytest.raises(TemplateError, match="alias bomb"):
        load_template("heat_template_version: 2018-08-31\ndescription: &d [*d]\n")


def test_unknown_scheduler_hint() -> None:
    text = """\
    heat_template_version: 2018-08-31
    resources:
      vm:
        type: OS::Nova::Server
        properties:
          image: img
          flavor: small
          scheduler_hints: {group: g1, near: vm2}
    """
    assert_rejected(
        text, "resources.vm.properties.scheduler_hints.near", "near", "unknown key (known: group)"
    )


def test_yaml_merge_keys_are_honoured() -> None:
    template = load_template(
        dedent("""\
        heat_template_version: 2018-08-31
        resources:
          a: &net
            type: OS::Neutron::Net
            properties: {network_type: vlan}
          b:
            <<: *net
            depends_on: a
        """)
    )
    assert template.resources["b"].type == "OS::Neutron::Net"
    assert template.resources["b"].depends_on == ("a",)
