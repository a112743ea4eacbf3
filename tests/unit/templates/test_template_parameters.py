"""Parameter values: defaults, type conversions, constraints, unknown and missing names."""

from __future__ import annotations

from textwrap import dedent

import pytest

from edgecloud.errors import TemplateError
from edgecloud.templates import Template, load_template, resolve_parameters


def template_with(**definitions: str) -> Template:
    lines = ["heat_template_version: 2018-08-31", "parameters:"]
    lines += [f"  {name}: {body}" for name, body in definitions.items()]
    return load_template("\n".join(lines) + "\n")


def resolve_one(body: str, value: object) -> object:
    return resolve_parameters(template_with(p=body), {"p": value})["p"]


def refusal(body: str, value: object) -> TemplateError:
    with pytest.raises(TemplateError) as info:
        resolve_one(body, value)
    assert info.value.field == "parameters.p"
    assert str(info.value).startswith("parameters.p: ")
    return info.value


def test_vcpe_parameters_resolve(vcpe_params: dict[str, object]) -> None:
    assert vcpe_params == {
        "customer": "acme",
        "flavor": "vnf.small",
        "image": "vcpe-2.4",
        "customer_vlan": 101,
        "dns_servers": ["192.0.2.53", "198.51.100.53"],
        "extra": {"syslog": {"host": "192.0.2.10", "port": 514}},
        "monitoring": False,
        "admin_password": "s3cret-default",
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [("42", 42), (" 7 ", 7), ("1.5", 1.5), (3, 3), (2.25, 2.25), ("-1e3", -1000.0)],
)
def test_number_conversion(value: object, expected: object) -> None:
    converted = resolve_one("{type: number}", value)
    assert converted == expected
    assert type(converted) is type(expected)


@pytest.mark.parametrize("value", ["forty", True, [1], "nan", "inf"])
def test_number_rejections(value: object) -> None:
    assert "number" in str(refusal("{type: number}", value))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a, b ,c", ["a", "b", "c"]),
        ("", []),
        ("single", ["single"]),
        (["x", 2], ["x", "2"]),
    ],
)
def test_comma_delimited_list_conversion(value: object, expected: list[str]) -> None:
    assert resolve_one("{type: comma_delimited_list}", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('{"a": [1, 2]}', {"a": [1, 2]}),
        ("[1, 2]", [1, 2]),
        ({"k": "v"}, {"k": "v"}),
        ([{"k": 1}], [{"k": 1}]),
    ],
)
def test_json_conversion(value: object, expected: object) -> None:
    assert resolve_one("{type: json}", value) == expected


@pytest.mark.parametrize("value", ["{not json", '"just a string"', "42", 42])
def test_json_rejections(value: object) -> None:
    assert "JSON" in str(refusal("{type: json}", value))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True), ("Yes", True), ("on", True), ("1", True), (1, True), (True, True),
        ("false", False), ("NO", False), ("off", False), ("0", False), (0, False),
    ],
)  # fmt: skip
def test_boolean_conversion(value: object, expected: bool) -> None:
    assert resolve_one("{type: boolean}", value) is expected


@pytest.mark.parametrize("value", ["maybe", 2, [True]])
def test_boolean_rejections(value: object) -> None:
    assert "boolean" in str(refusal("{type: boolean}", value))


def test_string_conversion() -> None:
    assert resolve_one("{type: string}", 1500) == "1500"
    assert "string" in str(refusal("{type: string}", {"a": 1}))
    assert "string" in str(refusal("{type: string}", False))


def test_defaults_apply_and_values_override() -> None:
    template = template_with(
        mtu="{type: number, default: 1500}", name="{type: string, default: edge}"
    )
    assert resolve_parameters(template, {}) == {"mtu": 1500, "name": "edge"}
    assert resolve_parameters(template, {"mtu": "9000"}) == {"mtu": 9000, "name": "edge"}


def test_missing_parameter() -> None:
    template = template_with(customer="{type: string}")
    with pytest.raises(TemplateError, match="a value is required") as info:
        resolve_parameters(template, {})
    assert info.value.field == "parameters.customer"


def test_unknown_parameter() -> None:
    template = template_with(customer="{type: string}")
    with pytest.raises(TemplateError, match="no such parameter") as info:
        resolve_parameters(template, {"customer": "acme", "colour": "blue"})
    assert info.value.field == "parameters.colour"


def test_range_constraint() -> None:
    body = "{type: number, constraints: [{range: {min: 2, max: 4094}}]}"
    assert resolve_one(body, 2) == 2
    assert resolve_one(body, "4094") == 4094
    assert "must be at least 2" in str(refusal(body, 1))
    assert "must be at most 4094" in str(refusal(body, 4095))


def test_length_constraint_on_strings_and_lists() -> None:
    body = "{type: string, constraints: [{length: {min: 2, max: 4}}]}"
    assert resolve_one(body, "abcd") == "abcd"
    assert "length of at least 2" in str(refusal(body, "a"))
    assert "length of at most 4" in str(refusal(body, "abcde"))
    listed = "{type: comma_delimited_list, constraints: [{length: {max: 2}}]}"
    assert "length of at most 2" in str(refusal(listed, "a,b,c"))


def test_allowed_values_constraint() -> None:
    body = "{type: string, constraints: [{allowed_values: [small, large]}]}"
    assert resolve_one(body, "large") == "large"
    assert "must be one of ['small', 'large']" in str(refusal(body, "medium"))
    numbers = "{type: number, constraints: [{allowed_values: [1500, '9000']}]}"
    assert resolve_one(numbers, "9000") == 9000
    listed = "{type: comma_delimited_list, constraints: [{allowed_values: [a, b]}]}"
    assert resolve_one(listed, "a,b,a") == ["a", "b", "a"]
    assert "has 'c'" in str(refusal(listed, "a,c"))


def test_allowed_pattern_must_match_the_whole_value() -> None:
    body = "{type: string, constraints: [{allowed_pattern: '[a-z]+'}]}"
    assert resolve_one(body, "acme") == "acme"
    assert "must match the pattern" in str(refusal(body, "acme1"))
    assert "must match the pattern" in str(refusal(body, "1acme"))


def test_modulo_constraint() -> None:
    body = "{type: number, constraints: [{modulo: {step: 2, offset: 1}}]}"
    assert resolve_one(body, 7) == 7
    assert "must be 1 modulo 2" in str(refusal(body, 8))


def test_constraint_description_replaces_the_generic_reason(vcpe: Template) -> None:
    with pytest.raises(TemplateError) as info:
        resolve_parameters(vcpe, {"customer": "Acme!", "customer_vlan": 10})
    assert str(info.value) == (
        "parameters.customer: 'Acme!' is not allowed: lower-case letters, digits and dashes"
    )


def test_hidden_values_are_not_echoed() -> None:
    body = "{type: string, hidden: true, constraints: [{length: {min: 8}}]}"
    error = refusal(body, "hunter2")
    assert "hunter2" not in str(error)
    assert "the value must have a length of at least 8" in str(error)


def test_custom_constraints_are_kept_not_checked() -> None:
    template = template_with(
        flavor="{type: string, constraints: [{custom_constraint: nova.flavor}]}"
    )
    assert template.parameters["flavor"].constraints[0].kind == "custom_constraint"
    assert resolve_parameters(template, {"flavor": "anything"}) == {"flavor": "anything"}


def test_stack_name_pseudo_parameter() -> None:
    template = load_template(
        dedent("""\
        heat_template_version: 2018-08-31
        resources:
          net:
            type: OS::Neutron::Net
            properties:
              name: {get_param: OS::stack_name}
        """)
    )
    assert resolve_parameters(template, {}, stack_name="vcpe-acme") == {
        "OS::stack_name": "vcpe-acme"
    }
