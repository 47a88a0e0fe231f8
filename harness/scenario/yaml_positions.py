"""Parse YAML while remembering the line of every key and list item, to locate errors.

Aliases (``*name``) are refused: a file from a pull request must not be able to expand into
billions of nodes ("billion laughs"). Each alias is reported where it stands, and nothing is
expanded, so refusing one takes time and memory linear in the file's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

Path = tuple[str | int, ...]

MAX_YAML_BYTES = 1_000_000
"""Larger files are refused before parsing (a scenario is a few KB)."""

_ALIAS_TAG = "tag:outlast,2026:refused-alias"
_ALIAS_MESSAGE = "YAML alias"


class _NoAliasLoader(yaml.SafeLoader):
    """A safe loader that composes every alias as a placeholder scalar instead of sharing the
    anchored node, so that walking or constructing the document never expands it."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.get_event()
            return yaml.ScalarNode(_ALIAS_TAG, event.anchor, event.start_mark, event.end_mark)
        return super().compose_node(parent, index)


@dataclass(frozen=True)
class YamlIssue:
    """A problem found while reading the YAML itself (syntax, duplicate key)."""

    line: int
    path: Path
    message: str


@dataclass(frozen=True)
class PositionedYaml:
    """The loaded data and ``{path: line}`` (1-based) for every mapping key and list item."""

    data: Any
    lines: dict[Path, int]
    issues: list[YamlIssue]

    def line_of(self, path: Path) -> int:
        """Line of ``path``, or of its nearest ancestor that exists in the file (else 1)."""
        for length in range(len(path), -1, -1):
            line = self.lines.get(path[:length])
            if line is not None:
                return line
        return 1

    def resolve(self, loc: tuple[Any, ...]) -> Path:
        """The longest prefix of ``loc`` that walks through the data, skipping foreign
        elements (pydantic union tags, validator names)."""
        node = self.data
        path: list[str | int] = []
        for element in loc:
            if isinstance(element, str) and "[" in element:
                continue  # e.g. "function-after[...]" or a union member's tag
            if isinstance(node, dict) and element in node:
                node = node[element]
                path.append(element)
            elif isinstance(node, list) and isinstance(element, int) and 0 <= element < len(node):
                node = node[element]
                path.append(element)
            elif isinstance(element, str) and isinstance(node, dict) and element not in node:
                path.append(element)  # a missing or unknown key: report it by name
                node = None
            else:
                continue
        return tuple(path)


def _alias_issue(node: yaml.Node, path: Path) -> YamlIssue:
    return YamlIssue(
        node.start_mark.line + 1,
        path,
        f"{_ALIAS_MESSAGE} *{node.value} is not allowed in scenario files (write the value out)",
    )


def _walk(node: yaml.Node, path: Path, lines: dict[Path, int], issues: list[YamlIssue]) -> None:
    if node.tag == _ALIAS_TAG:
        issues.append(_alias_issue(node, path))
    elif isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key_node.tag == _ALIAS_TAG:
                issues.append(_alias_issue(key_node, path))
                continue
            if key is None:
                continue
            child = (*path, key)
            if key in seen:
                issues.append(
                    YamlIssue(key_node.start_mark.line + 1, child, f'duplicate key "{key}"')
                )
            seen.add(key)
            lines[child] = key_node.start_mark.line + 1
            _walk(value_node, child, lines, issues)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[child] = item.start_mark.line + 1
            _walk(item, child, lines, issues)


def load_positioned(text: str) -> PositionedYaml:
    """Load ``text`` (safe YAML) and record line numbers.

    Raises ``yaml.YAMLError`` (with a problem mark) for syntax errors. Aliases and files over
    :data:`MAX_YAML_BYTES` come back as ``issues`` (and no data).
    """
    lines: dict[Path, int] = {(): 1}
    issues: list[YamlIssue] = []
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_YAML_BYTES:
        issues.append(YamlIssue(1, (), f"file is {size} bytes; at most {MAX_YAML_BYTES} allowed"))
        return PositionedYaml(None, lines, issues)
    loader = _NoAliasLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return PositionedYaml(None, lines, issues)
        _walk(node, (), lines, issues)
        if any(i.message.startswith(_ALIAS_MESSAGE) for i in issues):
            return PositionedYaml(None, lines, issues)  # placeholders stand where aliases were
        data = loader.construct_document(node)
    finally:
        loader.dispose()
    return PositionedYaml(data, lines, issues)
