"""Reading a spec's YAML safely: ``safe_load`` semantics with bounded nesting and alias expansion (a
small "billion laughs" file is refused in milliseconds), and the line of every key and item."""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import EditclipError
from .problems import Lines, Problem

MAX_DEPTH = 64
"""Deepest nesting of mappings and lists a spec may have (real specs use about 6)."""
MAX_NODES = 100_000
"""Most values a spec may hold once every alias is expanded (real specs hold a few hundred)."""


def load_yaml(text: str, source: str) -> tuple[Any, Lines, list[Problem]]:
    """The data of a YAML document (as ``yaml.safe_load`` gives it), the line of every key and item, and
    its duplicate keys as problems; raise for invalid YAML, deep nesting or too large an alias expansion."""
    try:
        _check_depth(text, source)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        raise EditclipError(f"spec file {source} is not valid YAML: {err}") from None
    if node is None:
        return None, {}, []
    _check_expansion(node, source)
    lines: Lines = {}
    problems: list[Problem] = []
    _index_nodes(node, (), lines, problems)
    try:
        data = yaml.safe_load(text)  # the expansion is bounded now
    except yaml.YAMLError as err:
        raise EditclipError(f"spec file {source} is not valid YAML: {err}") from None
    return data, lines, problems


def _check_depth(text: str, source: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH, from the parser's events (which need no recursion)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1
                raise EditclipError(
                    f"spec file {source} (line {line}): nested more than {MAX_DEPTH} levels deep; "
                    "a spec needs only a few levels"
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _check_expansion(root: yaml.Node, source: str) -> None:
    """Refuse a document whose aliases expand to more than MAX_NODES values, or refer to themselves.

    Counts each node's expanded size once (memoised by identity), so the check itself is linear in the
    file, however large the expansion."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if not children_done:
            if key in in_progress:
                raise EditclipError(
                    f"spec file {source} (line {node.start_mark.line + 1}): an alias refers to a value "
                    "that contains it (a recursive alias); write the value out"
                )
            in_progress.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        in_progress.discard(key)
        sizes[key] = 1 + sum(sizes[id(child)] for child in children)
        if sizes[key] > MAX_NODES:
            raise EditclipError(
                f"spec file {source} (line {node.start_mark.line + 1}): its aliases expand to more than "
                f"{MAX_NODES} values (a YAML alias bomb?); write the values out or use fewer aliases"
            )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _index_nodes(node: yaml.Node, loc: tuple[Any, ...], lines: Lines, problems: list[Problem]) -> None:
    """Record the 1-based line of every mapping key and sequence item; report duplicate keys."""
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            where = (*loc, key)
            if where in lines:
                line = key_node.start_mark.line + 1
                problems.append(Problem(where, f"duplicate key (first at line {lines[where]})", line=line))
                continue
            lines[where] = key_node.start_mark.line + 1
            _index_nodes(value_node, where, lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_nodes(item, (*loc, i), lines, problems)
