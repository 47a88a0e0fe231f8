"""Parse YAML while remembering the line of every key and list item, to locate errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

Path = tuple[str | int, ...]


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


def _walk(node: yaml.Node, path: Path, lines: dict[Path, int], issues: list[YamlIssue]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
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

    Raises ``yaml.YAMLError`` (with a problem mark) for syntax errors.
    """
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    lines: dict[Path, int] = {(): 1}
    issues: list[YamlIssue] = []
    if node is None:
        return PositionedYaml(None, lines, issues)
    _walk(node, (), lines, issues)
    data = yaml.safe_load(text)
    return PositionedYaml(data, lines, issues)
