"""Heat requests as operators write them: versions, functions, conditions, environments,
nested templates, resource groups, computed types, refused types, and the limits that keep
template input from hurting the site (templates/expanding.py, budget.py, parsing.py)."""

from __future__ import annotations

import asyncio
import email
import string
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from edgecloud.errors import TemplateError
from edgecloud.services import stacks
from edgecloud.templates import load_template, prepare, resolve_outputs, resolve_properties
from edgecloud.templates.budget import MAX_TEXT, within_budget
from edgecloud.templates.software_configs import (
    cloud_config,
    keypair_attributes,
    multipart,
    random_string,
    server_user_data,
)
from edgecloud.templates.versions import VERSIONS

FIXTURES = Path(__file__).parents[2] / "fixtures" / "templates"


def fake_refs(name: str) -> str:
    return f"ref-{name}"


def fake_attrs(name: str, attribute: str) -> object:
    return f"{name}.{attribute}"


def resolved(text: str, params: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    """Every flat resource's resolved properties, with fake references."""
    prepared = prepare(text, params or {}, stack_name="s1", **kw)
    return {
        name: resolve_properties(resource, prepared.values, fake_refs, fake_attrs)
        for name, resource in prepared.template.resources.items()
    }


# --- versions and functions ------------------------------------------------------------


@pytest.mark.parametrize("version", sorted(VERSIONS))
@pytest.mark.parametrize("quoted", [True, False])
def test_every_heat_version_parses(version: str, quoted: bool) -> None:
    shown = f"'{version}'" if quoted else version
    template = load_template(f"heat_template_version: {shown}\nresources: {{}}\n")
    assert template.version == version


def test_a_function_newer_than_the_version_is_refused_with_the_first_version() -> None:
    text = """\
heat_template_version: 2015-04-30
outputs:
  o: {value: {str_split: [',', 'a,b']}}
"""
    with pytest.raises(TemplateError, match="str_split needs heat_template_version 2015-10-15"):
        load_template(text)


def test_conditions_need_newton() -> None:
    with pytest.raises(TemplateError, match="conditions need heat_template_version 2016-10-14"):
        load_template("heat_template_version: 2016-04-08\nconditions: {c: true}\n")


def test_yaql_is_refused_with_a_reason() -> None:
    text = "heat_template_version: 2018-08-31\noutputs:\n  o: {value: {yaql: {expression: '1'}}}\n"
    with pytest.raises(TemplateError, match="yaql is refused: yaql expressions are not evaluated"):
        load_template(text)


VALUES = """\
heat_template_version: 2018-08-31
parameters:
  conf: {type: json, default: {a: {b: [x, deep]}}}
  names: {type: comma_delimited_list, default: "r1,r2"}
outputs:
  replaced:
    value:
      str_replace:
        template: "$host:$port $hostname"
        params: {$host: h, $port: 80, $hostname: long}
  nested_join:
    value: {list_join: ['-', [{list_join: [',', {get_param: names}]}, z]]}
  path: {value: {get_param: [conf, a, b, 1]}}
  merged: {value: {map_merge: [{a: 1}, {b: 2}, {a: 3}]}}
  repeated:
    value: {repeat: {for_each: {'%n%': {get_param: names}}, template: 'vm-%n%'}}
  concat: {value: {list_concat_unique: [[a, b], [b, c]]}}
  split: {value: {str_split: [',', 'a,b,c', 1]}}
  digest: {value: {digest: [sha256, abc]}}
  strict:
    value: {str_replace_strict: {template: 'a-X', params: {X: b}}}
"""


def test_value_functions() -> None:
    prepared = prepare(VALUES, {}, stack_name="s1")
    out = resolve_outputs(prepared.template, prepared.values, fake_refs, fake_attrs)
    assert out["replaced"] == "h:80 long"  # longest key first, no rescanning
    assert out["nested_join"] == "r1,r2-z"
    assert out["path"] == "deep"
    assert out["merged"] == {"a": 3, "b": 2}
    assert out["repeated"] == ["vm-r1", "vm-r2"]
    assert out["concat"] == ["a", "b", "c"]
    assert out["split"] == "b"
    assert out["digest"].startswith("ba7816bf")
    assert out["strict"] == "a-b"


def test_str_replace_strict_refuses_a_missing_key() -> None:
    text = VALUES.replace("params: {X: b}", "params: {Y: b}")
    prepared = prepare(text, {}, stack_name="s1")
    with pytest.raises(TemplateError, match="'Y' does not occur in the template"):
        resolve_outputs(prepared.template, prepared.values, fake_refs, fake_attrs)


@given(
    st.text(alphabet="abc", max_size=40),
    st.dictionaries(st.sampled_from("abc"), st.text(alphabet="xyzabc", max_size=5), max_size=3),
)
def test_str_replace_never_rescans_replaced_text(template: str, params: dict[str, str]) -> None:
    """Single-letter keys: the result is the letter-by-letter translation, whatever the values
    hold (a value that contains a key is not replaced again)."""
    text = yaml.safe_dump(
        {
            "heat_template_version": "2018-08-31",
            "outputs": {"o": {"value": {"str_replace": {"template": template, "params": params}}}},
        }
    )
    prepared = prepare(text, {}, stack_name="s1")
    out = resolve_outputs(prepared.template, prepared.values, fake_refs, fake_attrs)
    assert out["o"] == "".join(params.get(c, c) for c in template)


# --- conditions ------------------------------------------------------------------------

CONDITIONAL = """\
heat_template_version: 2021-04-16
parameters:
  env: {type: string, default: prod}
  mgmt: {type: boolean, default: false}
conditions:
  prod: {equals: [{get_param: env}, prod]}
  with_mgmt: {and: [prod, {get_param: mgmt}]}
  not_prod: {not: prod}
resources:
  lan: {type: OS::Neutron::Net}
  mgmt: {type: OS::Neutron::Net, condition: with_mgmt}
  vm:
    type: OS::Nova::Server
    properties:
      image: img
      flavor: {if: [prod, big, small]}
      metadata: {debug: {if: [not_prod, 'on']}}
      networks:
        - network: {get_resource: lan}
        - {if: [with_mgmt, {network: {get_resource: mgmt}}]}
"""


def test_conditions_skip_resources_and_pick_branches() -> None:
    props = resolved(CONDITIONAL)
    assert set(props) == {"lan", "vm"}
    assert props["vm"]["flavor"] == "big"
    assert props["vm"]["metadata"] == {}  # an if without else removes the key (wallaby)
    assert props["vm"]["networks"] == [{"network": "ref-lan"}]
    props = resolved(CONDITIONAL, {"mgmt": "true"})
    assert set(props) == {"lan", "mgmt", "vm"}
    assert props["vm"]["networks"][1] == {"network": "ref-mgmt"}
    props = resolved(CONDITIONAL, {"env": "lab"})
    assert props["vm"]["flavor"] == "small" and props["vm"]["metadata"] == {"debug": "on"}


def test_referring_to_a_resource_whose_condition_is_false_is_refused() -> None:
    text = CONDITIONAL.replace(
        "{if: [with_mgmt, {network: {get_resource: mgmt}}]}", "{network: {get_resource: mgmt}}"
    )
    with pytest.raises(TemplateError, match="'mgmt' is not created \\(its condition is false\\)"):
        prepare(text, {}, stack_name="s1")


# --- environments, nested templates, groups --------------------------------------------

TOP = """\
heat_template_version: 2016-10-14
parameters:
  count: {type: number, default: 2}
  flavor: {type: string}
resources:
  lan: {type: OS::Neutron::Net}
  vnfs:
    type: OS::Heat::ResourceGroup
    properties:
      count: {get_param: count}
      resource_def:
        type: OS::Edge::Vnf
        properties:
          index: "%index%"
          net: {get_resource: lan}
          flavor: {get_param: flavor}
  sg: {type: OS::Neutron::SecurityGroup, properties: {rules: []}}
  off: {type: OS::Edge::Unused}
outputs:
  names: {value: {get_attr: [vnfs, vm_name]}}
  first: {value: {get_attr: [vnfs, resource.0.vm_name]}}
  refs: {value: {get_attr: [vnfs, refs]}}
"""
NESTED = """\
heat_template_version: 2015-04-30
parameters:
  index: {type: string}
  net: {type: string}
  flavor: {type: string, default: small}
resources:
  port:
    type: OS::Neutron::Port
    properties: {network: {get_param: net}}
  vm:
    type: OS::Nova::Server
    properties:
      name: {str_replace: {template: vm-X, params: {X: {get_param: index}}}}
      image: img
      flavor: {get_param: flavor}
      networks: [{port: {get_resource: port}}]
      metadata: {boot: {get_file: scripts/boot.sh}}
outputs:
  vm_name: {value: {get_attr: [vm, name]}}
"""
ENV = """\
parameters: {flavor: big}
parameter_defaults: {count: 3}
resource_registry:
  OS::Edge::Vnf: ../lib/vnf.yaml
  OS::Edge::Unused: OS::Heat::None
"""
FILES = {"env/site.env": ENV, "lib/vnf.yaml": NESTED, "lib/scripts/boot.sh": "#!/bin/sh\n"}


def test_environment_nested_template_and_group() -> None:
    prepared = prepare(TOP, {}, stack_name="s1", files=FILES, environment_files=["env/site.env"])
    flat = prepared.template.resources
    assert list(flat) == [
        "lan", "vnfs.0.port", "vnfs.0.vm", "vnfs.1.port", "vnfs.1.vm", "vnfs.2.port",
        "vnfs.2.vm", "sg", "off",
    ]  # fmt: skip
    vm = resolve_properties(flat["vnfs.2.vm"], prepared.values, fake_refs, fake_attrs)
    assert vm["name"] == "vm-2"
    assert vm["flavor"] == "big"  # environment parameters, then the group's properties
    assert vm["networks"] == [{"port": "ref-vnfs.2.port"}]
    assert vm["metadata"] == {"boot": "#!/bin/sh\n"}  # get_file relative to the nested file
    port = resolve_properties(flat["vnfs.0.port"], prepared.values, fake_refs, fake_attrs)
    assert port["network"] == "ref-lan"
    out = resolve_outputs(prepared.template, prepared.values, fake_refs, fake_attrs)
    assert out["names"] == ["vnfs.0.vm.name", "vnfs.1.vm.name", "vnfs.2.vm.name"]
    assert out["first"] == "vnfs.0.vm.name"
    assert out["refs"] == ["vnfs.0", "vnfs.1", "vnfs.2"]


def test_explicit_parameters_win_over_the_environment() -> None:
    prepared = prepare(
        TOP, {"count": 1, "flavor": "tiny"}, stack_name="s1", files=FILES,
        environment_files=["env/site.env"],
    )  # fmt: skip
    assert [n for n in prepared.template.resources if n.endswith(".vm")] == ["vnfs.0.vm"]
    assert prepared.template.resources["vnfs.0.vm"].properties["flavor"] == "tiny"


def test_a_missing_nested_file_is_named() -> None:
    files = {k: v for k, v in FILES.items() if k != "lib/vnf.yaml"}
    with pytest.raises(TemplateError, match=r"'lib/vnf\.yaml' was not sent in files"):
        prepare(TOP, {}, stack_name="s1", files=files, environment_files=["env/site.env"])


def test_a_bad_member_property_is_refused_before_anything_is_created() -> None:
    files = {**FILES, "lib/vnf.yaml": NESTED.replace("vm-X", "../X")}
    with pytest.raises(TemplateError, match="does not match") as info:
        prepare(TOP, {}, stack_name="s1", files=files, environment_files=["env/site.env"])
    assert info.value.field == "resources.vnfs.0.vm.properties.name"
    assert str(info.value).startswith("lib/vnf.yaml line ")


def test_group_count_is_capped() -> None:
    with pytest.raises(TemplateError, match=r"outside 0\.\.100"):
        prepare(
            TOP, {"count": 101}, stack_name="s1", files=FILES, environment_files=["env/site.env"]
        )


# --- computed types --------------------------------------------------------------------


def test_random_string_honours_classes_and_sequences() -> None:
    value = random_string(
        {
            "length": 12,
            "character_classes": [{"class": "digits", "min": 3}, {"class": "uppercase", "min": 2}],
            "character_sequences": [{"sequence": "!@", "min": 1}],
        }
    )
    assert len(value) == 12
    assert sum(c in string.digits for c in value) >= 3
    assert sum(c in string.ascii_uppercase for c in value) >= 2
    assert any(c in "!@" for c in value)
    with pytest.raises(TemplateError, match="length 2 is less than"):
        random_string({"length": 2, "character_classes": [{"class": "digits", "min": 3}]})


def test_cloud_config_and_multipart_mime() -> None:
    config = cloud_config({"users": [{"name": "ops"}], "runcmd": ["echo hi"]})
    assert config.startswith("#cloud-config\n")
    assert yaml.safe_load(config)["runcmd"] == ["echo hi"]
    text = multipart(
        [{"config": "config-s1-cc"}, {"config": "#!/bin/sh\necho x\n", "filename": "x.sh"}],
        {"config-s1-cc": config},
    )
    parts = [p for p in email.message_from_string(text).walk() if not p.is_multipart()]
    assert [p.get_content_type() for p in parts] == ["text/cloud-config", "text/x-shellscript"]
    assert parts[0].get_payload() == config
    assert server_user_data({"user_data": "config-s1-cc"}, {"config-s1-cc": config}) == config
    with pytest.raises(TemplateError, match="HEAT_CFNTOOLS is refused"):
        server_user_data({"user_data": "x", "user_data_format": "HEAT_CFNTOOLS"}, {})


def test_keypair_generated_when_no_public_key() -> None:
    attrs = keypair_attributes({"name": "k1", "save_private_key": True})
    assert attrs["public_key"].startswith("ssh-ed25519 ")
    assert "OPENSSH PRIVATE KEY" in attrs["private_key"]
    assert keypair_attributes({"name": "k1"})["private_key"] == ""


ADDRESSES = """\
heat_template_version: 2018-08-31
resources:
  lan: {type: OS::Neutron::Net, properties: {name: lan}}
  sub:
    type: OS::Neutron::Subnet
    properties:
      network_id: {get_resource: lan}
      cidr: 2001:db8::/64
      ip_version: 6
      ipv6_address_mode: slaac
      ipv6_ra_mode: slaac
      dns_nameservers: [2001:db8::53]
      host_routes: [{destination: 2001:db8:1::/64, nexthop: 2001:db8::1}]
      allocation_pools: [{start: 2001:db8::10, end: 2001:db8::20}]
      enable_dhcp: false
  port:
    type: OS::Neutron::Port
    properties:
      network: {get_resource: lan}
      fixed_ips: [{subnet: {get_resource: sub}, ip_address: 2001:db8::11}]
  key: {type: OS::Nova::KeyPair, properties: {name: ops}}
  vm:
    type: OS::Nova::Server
    properties:
      image: img
      flavor: small
      key_name: {get_resource: key}
      networks:
        - port: {get_resource: port}
        - {network: {get_resource: lan}, fixed_ip: 2001:db8::12, subnet: {get_resource: sub}}
outputs:
  ip: {value: {get_attr: [port, fixed_ips, 0, ip_address]}}
"""


def test_subnets_fixed_ips_and_key_pairs_resolve() -> None:
    props = resolved(ADDRESSES)
    assert props["sub"]["network"] == "ref-lan"  # network_id is Heat's old name
    assert props["sub"]["host_routes"][0]["nexthop"] == "2001:db8::1"
    assert props["port"]["fixed_ips"] == [{"subnet": "ref-sub", "ip_address": "2001:db8::11"}]
    assert props["vm"]["networks"][1]["fixed_ip"] == "2001:db8::12"
    bad = ADDRESSES.replace("cidr: 2001:db8::/64", "cidr: 2001:db8::/129")
    with pytest.raises(TemplateError, match="is not a CIDR"):
        prepare(bad, {}, stack_name="s1")


# --- refused types ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_name", "reason"),
    [
        ("OS::Neutron::FloatingIP", "no Neutron router, NAT or external network"),
        ("OS::Cinder::Volume", "no block storage service"),
        ("OS::Heat::WaitCondition", "in-guest agent and a signal endpoint"),
        ("OS::Heat::SoftwareDeployment", "in-guest agent"),
        ("AWS::EC2::Instance", "CloudFormation-compatible"),
    ],
)
def test_types_without_meaning_on_an_edge_site_are_refused_with_a_reason(
    type_name: str, reason: str
) -> None:
    text = f"heat_template_version: 2018-08-31\nresources:\n  thing: {{type: '{type_name}'}}\n"
    with pytest.raises(TemplateError) as info:
        prepare(text, {}, stack_name="s1")
    assert info.value.field == "resources.thing.type"
    assert f"{type_name} is refused on an edge site" in str(info.value)
    assert reason in str(info.value)


# --- limits ----------------------------------------------------------------------------


def alias_bomb() -> str:
    lines = ["heat_template_version: 2018-08-31", "description: x", "parameter_groups: []"]
    lines.append("a0: &a0 [x, x, x, x, x, x, x, x, x, x]")
    for i in range(1, 7):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_quickly() -> None:
    text = alias_bomb()
    assert len(text) < 600  # expands to 10**7 entries
    started = time.monotonic()
    with pytest.raises(TemplateError, match="alias bomb"):
        load_template(text)
    assert time.monotonic() - started < 1.0


def test_merge_key_bomb_is_refused_quickly() -> None:
    lines = ["heat_template_version: 2018-08-31", "b0: &b0 {k0: 1, k1: 2}"]
    for i in range(1, 25):
        lines.append(f"b{i}: &b{i} {{<<: *b{i - 1}, z{i}: *b{i - 1}, y{i}: *b{i - 1}}}")
    started = time.monotonic()
    with pytest.raises(TemplateError, match="alias bomb"):
        load_template("\n".join(lines) + "\n")
    assert time.monotonic() - started < 1.0


def test_names_from_templates_are_checked_like_api_names() -> None:
    text = """\
heat_template_version: 2018-08-31
parameters: {n: {type: string}}
resources:
  vm: {type: OS::Nova::Server, properties: {name: {get_param: n}, image: i, flavor: f}}
"""
    for bad in ("../../etc/passwd", "a b", "-x", "x" * 64):
        with pytest.raises(TemplateError, match="does not match") as info:
            prepare(text, {"n": bad}, stack_name="s1")
        assert info.value.field == "resources.vm.properties.name"
    prepare(text, {"n": "fw-1.a_b"}, stack_name="s1")


def test_nested_list_join_and_str_replace_results_are_capped() -> None:
    text = """\
heat_template_version: 2018-08-31
parameters: {big: {type: string}}
outputs:
  o:
    value:
      str_replace:
        template: XXXXXXXXXXXXXXXXXXXX
        params: {X: {list_join: ['', [{get_param: big}, {get_param: big}]]}}
"""
    prepared = prepare(text, {"big": "y" * 200_000}, stack_name="s1")
    with pytest.raises(TemplateError, match=f"more than {MAX_TEXT} characters"):
        resolve_outputs(prepared.template, prepared.values, fake_refs, fake_attrs)


def test_catastrophic_allowed_pattern_is_stopped() -> None:
    text = """\
heat_template_version: 2018-08-31
parameters:
  p: {type: string, constraints: [{allowed_pattern: '(a|aa)+$'}]}
"""
    started = time.monotonic()
    with pytest.raises(TemplateError, match="backtracks catastrophically"):
        prepare(text, {"p": "a" * 60 + "!"}, stack_name="s1")
    assert time.monotonic() - started < 2.0


def big_template(resources: int) -> str:
    body = {
        "heat_template_version": "2018-08-31",
        "resources": {f"n{i}": {"type": "OS::Neutron::Net"} for i in range(resources)},
    }
    return yaml.safe_dump(body)


def test_the_time_budget_stops_a_long_operation() -> None:
    with within_budget(0.0), pytest.raises(TemplateError, match="longer than its budget"):
        prepare(big_template(400), {}, stack_name="s1")


async def test_the_event_loop_stays_responsive_while_a_template_is_expanded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A request that runs out of its budget gets a clear error, and meanwhile a ticker on the
    event loop keeps running (the work is in a worker thread)."""
    monkeypatch.setattr(stacks, "TEMPLATE_BUDGET", 0.3)
    text = big_template(500) + "".join(f"x{i}: [{', '.join(['a'] * 150)}]\n" for i in range(600))
    text = text.replace("heat_template_version", "description: big\nheat_template_version")
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - before - 0.01)

    task = asyncio.create_task(ticker())
    started = time.monotonic()
    with pytest.raises(TemplateError, match=r"longer than its budget of 0\.3 s"):
        await stacks.prepare_request("s1", text, {})
    elapsed = time.monotonic() - started
    done.set()
    await task
    assert len(lags) >= 5, "the event loop did not run while the template was processed"
    assert max(lags) < 0.25, f"the event loop stalled for {max(lags):.3f} s"
    assert elapsed < 2.0


# --- a public NFV template -------------------------------------------------------------


def test_onap_vfirewall_resolves_with_its_environment() -> None:
    folder = FIXTURES / "onap-vfw"
    files = {"base_vfw.env": (folder / "base_vfw.env").read_text()}
    text = (folder / "base_vfw.yaml").read_text()
    prepared = prepare(text, {}, stack_name="vfw", files=files, environment_files=["base_vfw.env"])
    assert len(prepared.template.resources) == 16
    props = {
        name: resolve_properties(resource, prepared.values, fake_refs, fake_attrs)
        for name, resource in prepared.template.resources.items()
    }
    assert props["my_keypair"]["name"] == "vfw_key_ref-random-str"
    assert props["unprotected_private_subnet"]["cidr"] == "192.168.10.0/24"
    assert props["vfw_private_0_port"]["fixed_ips"][0]["ip_address"] == "192.168.10.100"
    assert 'echo "10.0.4.1" > /opt/config/dcae_collector_ip.txt' in props["vfw_0"]["user_data"]
    assert [n.get("port") for n in props["vfw_0"]["networks"]][1:] == [
        "ref-vfw_private_0_port", "ref-vfw_private_1_port", "ref-vfw_private_2_port",
    ]  # fmt: skip


def test_list_join_is_capped_while_it_joins() -> None:
    text = """\
heat_template_version: 2018-08-31
parameters: {big: {type: string}}
outputs:
  o: {value: {list_join: [',', {repeat: {for_each: {'%i%': [1, 2, 3, 4, 5, 6]}, template: {get_param: big}}}]}}
"""
    prepared = prepare(text, {"big": "y" * 200_000}, stack_name="s1")
    with pytest.raises(TemplateError, match=f"list_join makes a string of more than {MAX_TEXT}"):
        resolve_outputs(prepared.template, prepared.values, fake_refs, fake_attrs)
