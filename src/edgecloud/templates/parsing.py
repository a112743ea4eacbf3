"""YAML text to plain data plus the line of every key and list item.

The first step of templates/loading.py. PyYAML composes the node tree (which keeps marks);
we build plain dicts, lists and scalars from it and record, for every path, the line it
starts on, so that later checks can say ``template line 12: resources.fw.type: ...``.
Timestamps stay strings (``heat_template_version: 2013-05-23``), as in Heat. Duplicate keys
and non-scalar keys are rejected. Aliases and merge keys (``<<``) are allowed, but the size the
document would have once every alias is expanded is counted on the composed node graph
(linear time, each node once) BEFORE anything is expanded: a "billion laughs" document of a
few hundred bytes is refused in milliseconds instead of building millions of entries. Every
step ticks templates/budget.py. Errors go through templates/problems.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NoReturn

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from edgecloud.templates.budget import MAX_TEXT, tick
from edgecloud.templates.problems import Path, template_error

MAX_NODES = 100_000
MAX_DEPTH = 64


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps YAML timestamps as strings, as Heat's loader does, and checks
    the time budget while it composes (PyYAML's pure-Python composer: it lets other threads,
    the event loop's among them, run; libyaml's would hold the GIL for the whole document)."""

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        tick()
        return super().compose_node(parent, index)


def _timestamp_as_string(loader: _Loader, node: ScalarNode) -> str:
    return str(loader.construct_scalar(node))


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_string)


@dataclass(frozen=True)
class Lines:
    """The line (1-based) each path of a parsed template starts on, and its source name."""

    source: str
    by_path: Mapping[Path, int]

    def line(self, path: Path) -> int:
        """The line of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self.by_path.get(path[:end])
            if line is not None:
                return line
        return 1

    def fail(self, path: Path, message: str) -> NoReturn:
        """Raise TemplateError for ``path`` at its line."""
        raise template_error(self.source, self.line(path), path, message)


def parse_yaml(text: str, source: str = "template") -> tuple[object, Lines]:
    """The template's data and the lines of its paths; TemplateError on bad YAML."""
    if len(text) > MAX_TEXT:
        raise template_error(source, None, (), f"is {len(text)} characters long (max {MAX_TEXT})")
    try:
        loader = _Loader(text)  # its reader refuses control characters at once
    except yaml.YAMLError as exc:
        reason = str(exc).splitlines()[0]
        raise template_error(source, None, (), f"invalid YAML: {reason}") from exc
    try:
        node = loader.get_single_node()
        if node is None:
            raise template_error(source, 1, (), "the template is empty")
        size = expanded_size(node)
        if size > MAX_NODES:
            raise template_error(
                source,
                None,
                (),
                f"the document expands to more than {MAX_NODES} values once its YAML aliases "
                "and merge keys are expanded (an alias bomb?)",
            )
        builder = _Builder(loader, source)
        return builder.value(node, (), 0), Lines(source, builder.lines)
    except yaml.MarkedYAMLError as exc:
        raise template_error(source, _mark_line(exc), (), f"invalid YAML: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise template_error(source, None, (), f"invalid YAML: {exc}") from exc
    finally:
        loader.dispose()


def expanded_size(root: Node) -> int:
    """How many nodes the document has with every alias (and merge) expanded, counted
    without expanding anything: each distinct node's size is computed once. Stops counting
    past MAX_NODES; a node that contains itself (a recursive alias) counts as too big."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children = _children(node)
        if children_done:
            visiting.discard(id(node))
            total = 1 + sum(sizes[id(child)] for child in children)
            sizes[id(node)] = min(total, MAX_NODES + 1)
            continue
        if id(node) in sizes:
            continue
        if id(node) in visiting:
            return MAX_NODES + 1
        tick()
        visiting.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in visiting:
                return MAX_NODES + 1
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def _mark_line(exc: yaml.MarkedYAMLError) -> int | None:
    mark = exc.problem_mark or exc.context_mark
    return mark.line + 1 if mark is not None else None


@dataclass
class _Builder:
    """Walks composed nodes into plain data, recording each path's line."""

    loader: _Loader
    source: str
    lines: dict[Path, int] = field(default_factory=dict)
    count: int = 0

    def value(self, node: Node, path: Path, depth: int) -> object:
        self._budget(node, path, depth)
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, SequenceNode):
            return [self.value(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node)

    def _budget(self, node: Node, path: Path, depth: int) -> None:
        self.count += 1
        if self.count % 256 == 0:
            tick()
        if self.count > MAX_NODES:
            self._fail(node, path, f"the template has more than {MAX_NODES} values")
        if depth > MAX_DEPTH:
            self._fail(node, path, f"the template nests deeper than {MAX_DEPTH} levels")

    def _mapping(self, node: MappingNode, path: Path, depth: int) -> dict[str, object]:
        self.loader.flatten_mapping(node)
        result: dict[str, object] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path, result)
            self.lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = self.value(value_node, (*path, key), depth + 1)
        return result

    def _key(self, node: Node, path: Path, seen: Mapping[str, object]) -> str:
        if not isinstance(node, ScalarNode):
            self._fail(node, path, "mapping keys must be plain strings")
        key = str(node.value)
        if key in seen:
            self._fail(node, (*path, key), "duplicate key")
        return key

    def _fail(self, node: Node, path: Path, message: str) -> NoReturn:
        raise template_error(self.source, node.start_mark.line + 1, path, message)
