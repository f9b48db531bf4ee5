"""A call tree with self values: the common shape every stack-based format is written from.

CPU profiles (derived from yappi's call graph) and heap profiles (from
tracemalloc tracebacks) are both turned into this tree first; each encoder
(cpuprofile, pprof, folded, ...) then only walks it.
"""

from __future__ import annotations

from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple


class Frame(NamedTuple):
    """A code location. ``lineno`` is 1-based (0 when unknown).

    A named tuple: frames are dictionary keys in every tree, and a tuple's hash
    and equality run in C.
    """

    function: str
    filename: str = ""
    lineno: int = 0

    def label(self) -> str:
        """``function (file:line)``, the form viewers show."""
        if not self.filename:
            return self.function
        return f"{self.function} ({self.filename}:{self.lineno})"


class CallNode:
    """A node of the call tree: a frame reached by one path from the root."""

    __slots__ = ("frame", "self_value", "self_count", "children")

    def __init__(self, frame: Frame) -> None:
        self.frame = frame
        self.self_value = 0.0
        self.self_count = 0
        self.children: Dict[Frame, CallNode] = {}

    def child(self, frame: Frame) -> CallNode:
        node = self.children.get(frame)
        if node is None:
            node = self.children[frame] = CallNode(frame)
        return node

    def total_value(self) -> float:
        return sum(node.self_value for node, _ in self.walk())

    def total_count(self) -> int:
        return sum(node.self_count for node, _ in self.walk())

    def walk(self) -> Iterator[Tuple[CallNode, int]]:
        """Depth-first pre-order (node, depth) without recursion (trees can be deep)."""
        stack: List[Tuple[CallNode, int]] = [(self, 0)]
        while stack:
            node, depth = stack.pop()
            yield node, depth
            for child in reversed(list(node.children.values())):
                stack.append((child, depth + 1))

    def stacks(self) -> Iterator[Tuple[Tuple[Frame, ...], CallNode]]:
        """Every node with its path from (not including) this node, root first."""
        stack: List[Tuple[CallNode, Tuple[Frame, ...]]] = [
            (child, (child.frame,)) for child in reversed(list(self.children.values()))
        ]
        while stack:
            node, path = stack.pop()
            yield path, node
            for child in reversed(list(node.children.values())):
                stack.append((child, path + (child.frame,)))


ROOT = Frame("(root)")


def new_root() -> CallNode:
    return CallNode(ROOT)


def add_stack(root: CallNode, frames: List[Frame], value: float, count: int = 1) -> CallNode:
    """Add a stack (outermost frame first) carrying ``value`` at its leaf."""
    node = root
    for frame in frames:
        node = node.child(frame)
    node.self_value += value
    node.self_count += count
    return node


def find(root: CallNode, function: str) -> Optional[CallNode]:
    """First node (pre-order) whose frame has this function name."""
    for node, _ in root.walk():
        if node.frame.function == function:
            return node
    return None
