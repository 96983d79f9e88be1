"""Reading a user's YAML (or JSON) with bounds, so that no input gets a traceback instead of one line.

PyYAML's safe loader composes nodes recursively, so a document nested a thousand levels deep raises
RecursionError; an alias may point at its own anchor (`&a [*a]`), which builds a cyclic object that
later code recurses into forever; a few nested aliases expand to billions of nodes ("billion
laughs"); and some scalars raise ValueError from Python itself (an int past 4300 digits, month 13,
a timezone offset past 24 h). `load_all` raises each as UnreadableError, a yaml.YAMLError with the
place it found it.

PyYAML also keeps the last of two equal keys in one mapping without a word (`version: "7"` then
`version: "8"` reads as "8"): a mistake a reviewer of `modeldeploy render` would not see (kubectl
1.35 and 1.36 apply such a file with the last value too, tried on the test bed's API server). YAML
requires keys to be unique in a mapping; `load_all` raises DuplicateKeyError, marked at the second.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from yaml.error import MarkedYAMLError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# Deeper than any manifest: a ModelDeployment's deepest field (an affinity's match expression values)
# is about a dozen levels down, and kubectl's `kind: List` adds two.
MAX_DEPTH = 100
# Nodes in a document with its aliases expanded: far above a manifest (the chart's largest rendered
# document has a few thousand), far below what takes seconds to validate.
MAX_NODES = 1_000_000


class UnreadableError(MarkedYAMLError):
    """Valid syntax past a bound, or a value Python cannot hold."""

    def __init__(self, problem: str, node_or_mark: Any) -> None:
        mark = getattr(node_or_mark, "start_mark", node_or_mark)
        super().__init__(problem=problem, problem_mark=mark)


class DuplicateKeyError(MarkedYAMLError):
    """A key given twice in one mapping; marked at the second, `first_line` (1-based) the first."""

    def __init__(self, key: Any, node: Node, first: Node) -> None:
        self.key = key
        self.line = node.start_mark.line + 1
        self.first_line = first.start_mark.line + 1
        shown = json.dumps(key, ensure_ascii=False) if isinstance(key, str) else str(key)
        super().__init__(
            problem=f"duplicate key {shown} (first at line {self.first_line})", problem_mark=node.start_mark
        )


MERGE_TAG = "tag:yaml.org,2002:merge"


class BoundedSafeLoader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise UnreadableError(f"nested deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_mapping_node(self, anchor: Any) -> MappingNode:
        node = super().compose_mapping_node(anchor)
        # Checked as composed, before a merge key (`<<: *base`) folds other pairs in: a key that
        # overrides a merged one is YAML's way to extend a mapping, not a duplicate.
        first: dict[Any, Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == MERGE_TAG:
                continue  # a complex key is refused later, as unhashable, by the constructor
            # Compared as constructed, as the mapping would hold them: 'version' and "version" are
            # one key, 1 and "1" two.
            key = self.construct_object(key_node)
            if key in first:
                raise DuplicateKeyError(key, key_node, first[key])
            first[key] = key_node
        return node

    def compose_document(self) -> Node | None:
        node = super().compose_document()
        if node is not None:
            _check_expanded(node)
        return node

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as error:
            # Python's own advice ("use sys.set_int_max_str_digits()") is not the user's to follow.
            raise UnreadableError(str(error).split("; use sys.")[0], node) from None


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expanded(root: Node) -> None:
    """Refuse a cycle through aliases, and a document whose aliases expand past the bounds.

    Iterative (the graph may be deep once aliases are followed), each node measured once."""
    depth: dict[int, int] = {}
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            kids = _children(node)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            if depth[key] > MAX_DEPTH:
                raise UnreadableError(f"nested deeper than {MAX_DEPTH} levels with aliases expanded", node)
            if size[key] > MAX_NODES:
                raise UnreadableError(f"more than {MAX_NODES} values with aliases expanded", node)
            continue
        if key in size:
            continue
        if key in on_path:
            raise UnreadableError("an alias refers to a node that contains it", node)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((kid, False) for kid in _children(node) if id(kid) not in size)


def load_all(text: str) -> list[Any]:
    """Every document in `text`; raises yaml.YAMLError for anything that is not a bounded document."""
    loader = BoundedSafeLoader(text)
    try:
        out: list[Any] = []
        while loader.check_data():  # type: ignore[no-untyped-call]
            out.append(loader.get_data())
        return out
    finally:
        loader.dispose()
