"""Function names for ``(file, line)`` pairs, which is all tracemalloc records.

The name is recovered from the source: the file is parsed once with ``ast``
and the innermost function, lambda, comprehension or class enclosing the line
gives a qualified name in the form ``code.co_qualname`` uses
(``Class.method``, ``outer.<locals>.inner``, ``<listcomp>``, ``<module>``).
Files without source (frozen, C, deleted) fall back to the code objects of
the module that defines them (``<frozen runpy>`` is ``runpy``; ``<string>``
is looked for in ``__main__``), then, for real paths, of every loaded
module's functions, then to the file's base name.
"""

from __future__ import annotations

import ast
import bisect
import dis
import inspect
import linecache
import os
import sys
import threading
from types import CodeType, FunctionType, ModuleType
from typing import Dict, Iterator, List, Optional, Tuple, Union, cast

_Scope = Tuple[int, int, str]  # first line, last line, qualified name

# Comprehensions run as their own code objects, except list/set/dict ones from 3.12 (PEP 709).
_COMPREHENSIONS: Dict[type, str] = {ast.GeneratorExp: "<genexpr>"}
if sys.version_info < (3, 12):
    _COMPREHENSIONS.update(
        {ast.ListComp: "<listcomp>", ast.SetComp: "<setcomp>", ast.DictComp: "<dictcomp>"}
    )


def _scopes(tree: ast.AST) -> List[_Scope]:
    """Every named scope of a module with its line span, outermost first."""
    scopes: List[_Scope] = []
    stack: List[Tuple[ast.AST, str]] = [(tree, "")]
    while stack:
        node, prefix = stack.pop()
        for child in ast.iter_child_nodes(node):
            name: Optional[str] = None
            inner = prefix
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                inner = name + ".<locals>."
            elif isinstance(child, ast.ClassDef):
                name = prefix + child.name
                inner = name + "."
            elif isinstance(child, ast.Lambda):
                name = prefix + "<lambda>"
                inner = name + ".<locals>."
            elif type(child) in _COMPREHENSIONS:
                name = prefix + _COMPREHENSIONS[type(child)]
                inner = name + ".<locals>."
            if name is not None:
                scope = cast(Union[ast.stmt, ast.expr], child)  # def, class, lambda, comprehension
                decorators = getattr(child, "decorator_list", [])
                first = min([scope.lineno] + [d.lineno for d in decorators])
                scopes.append((first, getattr(child, "end_lineno", None) or first, name))
            stack.append((child, inner))
    return scopes


class FunctionNames:
    """A cache of parsed files answering ``name(filename, lineno)``; thread-safe."""

    def __init__(self) -> None:
        self._files: Dict[str, Optional[Tuple[List[int], List[_Scope]]]] = {}
        self._code_names: Dict[str, List[Tuple[int, int, str]]] = {}
        self._all_code: Optional[Dict[str, List[Tuple[int, int, str]]]] = None
        self._names: Dict[Tuple[str, int], str] = {}
        self._lock = threading.Lock()

    def name(self, filename: str, lineno: int) -> str:
        with self._lock:
            key = (filename, lineno)
            found = self._names.get(key)
            if found is None:
                found = self._names[key] = self._lookup(filename, lineno)
            return found

    def _lookup(self, filename: str, lineno: int) -> str:
        scopes = self._scopes_of(filename)
        if scopes is not None:
            return _innermost(scopes, lineno) or "<module>"
        return self._from_code(filename, lineno) or os.path.basename(filename) or filename

    def _scopes_of(self, filename: str) -> Optional[Tuple[List[int], List[_Scope]]]:
        if filename in self._files:
            return self._files[filename]
        parsed: Optional[Tuple[List[int], List[_Scope]]] = None
        lines = linecache.getlines(filename)
        if lines:
            try:
                tree = ast.parse("".join(lines), filename)
            except (SyntaxError, ValueError):
                tree = None
            if tree is not None:
                scopes = sorted(_scopes(tree))
                parsed = ([s[0] for s in scopes], scopes)
        self._files[filename] = parsed
        return parsed

    def _from_code(self, filename: str, lineno: int) -> Optional[str]:
        spans = self._code_names.get(filename)
        if spans is None:
            # The module that defines the file, when it can be told, before the
            # whole process (about a second with a thousand modules loaded).
            spans = _code_spans(_modules_of(filename)).get(filename)
            if spans is None and not filename.startswith("<"):
                if self._all_code is None:
                    self._all_code = _code_spans(list(sys.modules.values()))
                spans = self._all_code.get(filename)
            spans = self._code_names[filename] = spans or []
        best: Optional[Tuple[int, int, str]] = None
        for first, last, name in spans:
            if first <= lineno <= last and (best is None or first >= best[0]):
                best = (first, last, name)
        return best[2] if best else None


def enclosing(name: str) -> str:
    """The scope around ``name``: the caller of a comprehension or lambda on the same line."""
    return name.rsplit(".<locals>.", 1)[0] if ".<locals>." in name else "<module>"


def _innermost(parsed: Tuple[List[int], List[_Scope]], lineno: int) -> Optional[str]:
    starts, scopes = parsed
    best: Optional[_Scope] = None
    # Scopes are sorted by first line: only those starting at or before lineno qualify.
    for index in range(bisect.bisect_right(starts, lineno) - 1, -1, -1):
        first, last, name = scopes[index]
        if best is not None and first < best[0]:
            break  # every remaining scope starts earlier: it encloses ``best``
        if last >= lineno and (best is None or len(name) > len(best[2])):
            best = scopes[index]
    return best[2] if best else None


def _modules_of(filename: str) -> List[ModuleType]:
    """The loaded modules that may define ``filename``'s code, without a full search.

    ``<frozen runpy>`` is module ``runpy``; a path is the module loaded from it;
    other pseudo-files (``<string>``, ``<stdin>``) are looked for in ``__main__``.
    """
    if filename.startswith("<frozen ") and filename.endswith(">"):
        names = [filename[len("<frozen ") : -1]]
    elif filename.startswith("<"):
        names = ["__main__"]
    else:
        return [
            module
            for module in list(sys.modules.values())
            if getattr(module, "__file__", None) == filename
        ]
    return [sys.modules[name] for name in names if name in sys.modules]


def _code_spans(modules: List[ModuleType]) -> Dict[str, List[Tuple[int, int, str]]]:
    """Line spans of the code objects of ``modules``' functions, by file.

    Nested code objects get the name ``__qualname__`` would give them
    (``co_qualname`` from Python 3.11; derived from the nesting before that).
    """
    spans: Dict[str, List[Tuple[int, int, str]]] = {}
    codes: List[Tuple[CodeType, str]] = []
    for module in modules:
        for value in list(getattr(module, "__dict__", {}).values()):
            if isinstance(value, FunctionType):
                codes.append((value.__code__, value.__qualname__))
            elif isinstance(value, type):
                codes.extend(
                    (v.__code__, v.__qualname__)
                    for v in list(vars(value).values())
                    if isinstance(v, FunctionType)
                )
    for code, derived in walk_code(codes):
        name = getattr(code, "co_qualname", derived)
        lines = [line for _, line in dis.findlinestarts(code) if line is not None]
        if lines:
            spans.setdefault(code.co_filename, []).append((min(lines), max(lines), name))
    return spans


def walk_code(codes: List[Tuple[CodeType, str]]) -> Iterator[Tuple[CodeType, str]]:
    """Each code object and those nested in it, with the qualified name of each.

    A nested name is its parent's plus ``.<locals>.`` (inside a function) or
    ``.`` (inside a class body), as ``__qualname__`` is formed.
    """
    while codes:
        code, name = codes.pop()
        yield code, name
        scope = f"{name}.<locals>." if code.co_flags & inspect.CO_NEWLOCALS else f"{name}."
        codes.extend((c, scope + c.co_name) for c in code.co_consts if isinstance(c, CodeType))
