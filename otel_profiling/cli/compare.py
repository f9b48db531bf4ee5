"""Two merged profiles compared: each normalised to shares of its own total.

Shares make sets of different sizes comparable (ten containers before a
deploy, four after; an hour against two). A function's share is inclusive:
the part of its side's total spent in it or below it, recursion counted once.
The stacks of both sides are laid out in one tree for the differential flame
graph, with AFTER's shares as widths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from otel_profiling.cli.flamegraph import MAX_NODES, totals_of
from otel_profiling.formats import ProfileTree
from otel_profiling.formats.calltree import CallNode, Frame

FunctionKey = Tuple[str, str]  # (function name, file)


@dataclass
class FunctionChange:
    """A function's inclusive share (0–1) of each side's total."""

    name: str
    file: str
    before: float
    after: float

    @property
    def delta(self) -> float:
        return self.after - self.before

    def as_json(self) -> Dict[str, object]:
        return {
            "name": self.name,
            "file": self.file,
            "before": self.before,
            "after": self.after,
            "delta": self.delta,
        }


def function_shares(root: CallNode) -> Dict[FunctionKey, float]:
    """Inclusive share of the root's total per (function, file); recursion counts once."""
    totals = totals_of(root)
    grand = totals[id(root)]
    if grand <= 0:
        return {}
    shares: Dict[FunctionKey, float] = {}
    on_path: Dict[FunctionKey, int] = {}
    pending: List[Tuple[CallNode, bool]] = [(child, False) for child in root.children.values()]
    while pending:
        node, leaving = pending.pop()
        key = (node.frame.function, node.frame.filename)
        if leaving:
            on_path[key] -= 1
            continue
        if not on_path.get(key):
            shares[key] = shares.get(key, 0.0) + totals[id(node)] / grand
        on_path[key] = on_path.get(key, 0) + 1
        pending.append((node, True))
        pending.extend((child, False) for child in node.children.values())
    return shares


def compare_functions(before: ProfileTree, after: ProfileTree) -> List[FunctionChange]:
    """Every function of either side, the largest change (either way) first."""
    old, new = function_shares(before.root), function_shares(after.root)
    changes = [
        FunctionChange(name, file, old.get((name, file), 0.0), new.get((name, file), 0.0))
        for name, file in {**old, **new}
    ]
    changes.sort(key=lambda c: (-abs(c.delta), -c.after, c.name, c.file))
    return changes


@dataclass
class UnionTree:
    """Both sides' stacks in one tree, in pre-order (``parents[i] < i``).

    ``after``/``before`` are a stack's inclusive shares on each side (0 where
    that side lacks it); ``gone`` is the BEFORE share of the stacks at or below
    it that AFTER lacks, the width they take when shown.
    """

    frames: List[Frame]
    parents: List[int]
    after: List[float]
    before: List[float]
    after_self: List[float]
    before_self: List[float]
    gone: List[float]


def union_tree(before: CallNode, after: CallNode, max_nodes: int = MAX_NODES) -> UnionTree:
    """Lay out both trees: AFTER's children widest first, then those only in BEFORE.

    Beyond ``max_nodes`` the stacks with the smallest shares are left out.
    """
    b_totals, a_totals = totals_of(before), totals_of(after)
    b_grand, a_grand = b_totals[id(before)] or 1.0, a_totals[id(after)] or 1.0
    tree = UnionTree([], [], [], [], [], [], [])
    pending: List[Tuple[Optional[CallNode], Optional[CallNode], int]] = [(after, before, -1)]
    while pending:
        a_node, b_node, parent = pending.pop()
        index = len(tree.frames)
        frame = (a_node or b_node).frame  # type: ignore[union-attr]
        tree.frames.append(frame)
        tree.parents.append(parent)
        tree.after.append(a_totals[id(a_node)] / a_grand if a_node else 0.0)
        tree.before.append(b_totals[id(b_node)] / b_grand if b_node else 0.0)
        tree.after_self.append(a_node.self_value / a_grand if a_node else 0.0)
        tree.before_self.append(b_node.self_value / b_grand if b_node else 0.0)
        a_kids = a_node.children if a_node else {}
        b_kids = b_node.children if b_node else {}
        order = sorted(a_kids.values(), key=lambda c: a_totals[id(c)], reverse=True)
        only_before = [c for f, c in b_kids.items() if f not in a_kids]
        only_before.sort(key=lambda c: b_totals[id(c)], reverse=True)
        children: List[Tuple[Optional[CallNode], Optional[CallNode], int]] = [
            (c, b_kids.get(c.frame), index) for c in order
        ]
        children += [(None, c, index) for c in only_before]
        pending.extend(reversed(children))
    tree.gone = _gone_shares(tree)
    if len(tree.frames) > max_nodes:
        tree = _prune(tree, max_nodes)
    return tree


def _gone_shares(tree: UnionTree) -> List[float]:
    gone = [0.0] * len(tree.frames)
    for k in range(len(tree.frames) - 1, 0, -1):
        missing = tree.after[k] == 0.0 and tree.before[k] > 0.0
        if missing:
            gone[k] = tree.before[k]
        parent = tree.parents[k]
        if not (tree.after[parent] == 0.0 and tree.before[parent] > 0.0):
            gone[parent] += gone[k]
    return gone


def _prune(tree: UnionTree, max_nodes: int) -> UnionTree:
    weights = [max(a, b) for a, b in zip(tree.after, tree.before, strict=True)]
    threshold = sorted(weights, reverse=True)[max_nodes - 1]
    kept = UnionTree([], [], [], [], [], [], [])
    new_index: Dict[int, int] = {}
    for k, weight in enumerate(weights):
        parent = tree.parents[k]
        if k and (weight < threshold or parent not in new_index):
            continue
        new_index[k] = len(kept.frames)
        kept.frames.append(tree.frames[k])
        kept.parents.append(new_index[parent] if k else -1)
        for name in ("after", "before", "after_self", "before_self", "gone"):
            getattr(kept, name).append(getattr(tree, name)[k])
    return kept
