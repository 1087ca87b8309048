"""YAML read with a bound on what aliases expand to, so a small hostile file cannot take minutes and gigabytes.

YAML's anchors and aliases share one node between several places; PyYAML builds the shared node once, but
everything that walks the result (validation, copies, dumps) walks every place it appears. Nine nested
levels of nine aliases are a 1 KB file that expands to 9^9 nodes (the "billion laughs"). The composed
document is measured with each alias counted at its expanded size before anything is built from it.
"""

from __future__ import annotations

from typing import Any

import yaml

from cleangpt_core.errors import ConfigError

MAX_EXPANDED_NODES = 100_000  # far above any config (the default experiment has a few hundred nodes)


class _BoundedLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a document whose aliases expand beyond `MAX_EXPANDED_NODES` nodes."""

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        if node is not None:
            _expanded_size(node, {}, set())
        return node


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many nodes `node` stands for with every alias expanded (shared nodes are measured once)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise ConfigError("the YAML refers to itself through an alias (a recursive anchor); write the values out")
    open_nodes.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, sizes, open_nodes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, sizes, open_nodes) + _expanded_size(v, sizes, open_nodes) for k, v in node.value)
    open_nodes.discard(key)
    if size > MAX_EXPANDED_NODES:
        raise ConfigError(
            f"the YAML expands to more than {MAX_EXPANDED_NODES:,} values through its aliases (*name); a config "
            "needs far fewer: write the values out instead of nesting aliases"
        )
    sizes[key] = size
    return size


def load_yaml(text: str, where: str) -> Any:
    """The value of a YAML document, with aliases bounded and nesting too deep to parse named (`where`: what
    the text is, for the message)."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # a SafeLoader subclass: builds plain data only
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    except RecursionError:
        raise ConfigError(f"{where} nests too deeply to read; flatten it") from None
