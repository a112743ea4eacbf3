"""HOT template versions: every name Heat accepts, and which intrinsic functions each offers.

templates/loading.py checks ``heat_template_version`` against ``VERSIONS`` and
templates/functions.py refuses a function the template's version does not have yet (with the
first version that has it), as Heat does. Release names (``newton``...) are aliases of their
dates. An unquoted date in YAML stays a string (templates/parsing.py keeps timestamps as
text), so ``heat_template_version: 2013-05-23`` and ``'2013-05-23'`` are the same.

Functions by first version (Heat's HOT specification):

    2013-05-23  get_attr get_file get_param get_resource list_join resource_facade str_replace
                (and the CFN-style Fn::Select, Fn::Join, Fn::Replace, Fn::Split, Fn::Base64,
                Ref... of that version only)
    2015-04-30  repeat digest
    2015-10-15  str_split
    2016-04-08  map_merge
    2016-10-14  yaql map_replace equals if not and or; the ``conditions`` section
    2017-02-24  str_replace_strict filter
    2017-09-01  make_url list_concat list_concat_unique contains str_replace_vstrict
    2021-04-16  ``if`` without a false value (the property is then left out)
"""

from __future__ import annotations

from collections.abc import Mapping

ALIASES: Mapping[str, str] = {
    "newton": "2016-10-14",
    "ocata": "2017-02-24",
    "pike": "2017-09-01",
    "queens": "2018-03-02",
    "rocky": "2018-08-31",
    "wallaby": "2021-04-16",
}
DATES = (
    "2013-05-23", "2014-10-16", "2015-04-30", "2015-10-15", "2016-04-08", "2016-10-14",
    "2017-02-24", "2017-09-01", "2018-03-02", "2018-08-31", "2021-04-16",
)  # fmt: skip
VERSIONS = frozenset({*DATES, *ALIASES})

FIRST_VERSION: Mapping[str, str] = {
    **dict.fromkeys(
        ("get_attr", "get_file", "get_param", "get_resource", "list_join", "resource_facade",
         "str_replace"),
        "2013-05-23",
    ),
    "repeat": "2015-04-30",
    "digest": "2015-04-30",
    "str_split": "2015-10-15",
    "map_merge": "2016-04-08",
    **dict.fromkeys(("yaql", "map_replace", "equals", "if", "not", "and", "or"), "2016-10-14"),
    "str_replace_strict": "2017-02-24",
    "filter": "2017-02-24",
    **dict.fromkeys(
        ("make_url", "list_concat", "list_concat_unique", "contains", "str_replace_vstrict"),
        "2017-09-01",
    ),
}  # fmt: skip
CFN_FUNCTIONS = frozenset(
    {"Fn::Select", "Fn::Join", "Fn::Replace", "Fn::Split", "Fn::Base64", "Fn::GetAZs",
     "Fn::MemberListToMap", "Fn::ResourceFacade", "Fn::GetAtt", "Ref"}
)  # fmt: skip
CONDITIONS_SINCE = "2016-10-14"
IF_WITHOUT_ELSE_SINCE = "2021-04-16"


def canonical(version: str) -> str:
    """The date a version name stands for (``pike`` -> ``2017-09-01``)."""
    return ALIASES.get(version, version)


def has_function(version: str, function: str) -> bool:
    """Whether templates of ``version`` may use ``function``."""
    first = FIRST_VERSION.get(function)
    return first is not None and canonical(version) >= first


def at_least(version: str, date: str) -> bool:
    """Whether ``version`` is ``date`` or later."""
    return canonical(version) >= date
