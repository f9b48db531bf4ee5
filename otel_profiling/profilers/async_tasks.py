"""asyncio tasks suspended in ``await``, seen from another thread.

A task suspended in ``await`` is on no thread's stack; its await chain is
reached from the task itself (``get_coro()``, then ``cr_await`` down). The
pending tasks are kept by asyncio in module-level collections that differ by
Python version:

* 3.10 and 3.11: ``asyncio.tasks._all_tasks``, a ``WeakSet`` of every task;
* 3.12 and 3.13: ``asyncio.tasks._scheduled_tasks`` (a ``WeakSet``) plus
  ``asyncio.tasks._eager_tasks`` (a ``set`` of tasks in their first, eager
  step).

The C accelerator (``_asyncio``) exports the same objects under the same
names. They are read from the sampler's thread while the loops' threads
change them: a ``WeakSet``'s underlying set of references is copied in one C
call, and a copy that still meets "changed size during iteration" is retried,
as ``asyncio.all_tasks()`` does. Above a limit, a random subset is looked at
before anything else is read, so the cost per sample stays bounded however
many tasks are pending. A task whose coroutine is running right now is left
out (its frames are on its thread's stack), and so is a task whose loop is
not running.
"""

from __future__ import annotations

import contextlib
import random
import sys
import weakref
from typing import Any, Dict, List, NamedTuple, Optional, Set, Tuple

_TASK_SETS = ("_all_tasks", "_scheduled_tasks", "_eager_tasks")
_RETRIES = 100


class SuspendedTask(NamedTuple):
    """A pending task, the thread that runs its loop, and its coroutine."""

    name: str
    thread: int
    coro: Any
    ident: int  # id() of the task, the key its spans are registered under
    task: weakref.ref  # to ask later whether it is still suspended
    new: bool  # not pending at the previous read


def still_suspended(reference: weakref.ref) -> bool:
    """Whether the task is still pending and not running (``False`` once it is gone)."""
    task = reference()
    if task is None:
        return False
    try:
        if task.done():
            return False
        coro = task.get_coro()
        return not (
            coro is None or getattr(coro, "cr_running", False) or getattr(coro, "gi_running", False)
        )
    except Exception:
        return False


def _references(collection: Any) -> List[Any]:
    """A copy of a task set: its weak references for a ``WeakSet`` (copied in C, at once)."""
    for _ in range(_RETRIES):
        try:
            return list(getattr(collection, "data", collection))
        except RuntimeError:  # changed size during iteration: another thread added a task
            continue
    return []


def _asyncio_tasks() -> Optional[Any]:
    asyncio = sys.modules.get("asyncio")
    return None if asyncio is None else getattr(asyncio, "tasks", None)


def _all_references() -> List[Any]:
    tasks_module = _asyncio_tasks()
    if tasks_module is None:
        return []
    references: List[Any] = []
    for name in _TASK_SETS:
        collection = getattr(tasks_module, name, None)
        if collection:  # absent in this version, or empty (a cheap check on a WeakSet)
            references.extend(_references(collection))
    return references


class TaskScanner:
    """Reads the suspended tasks at each sample, and tells which are new since the last one.

    Above ``limit`` pending tasks a random ``limit`` of them are looked at, each
    standing for ``scale`` tasks. A task is *new* when it was not pending at
    the previous read: known exactly while at most ``NEW_TASKS_UP_TO`` tasks
    are pending (the previous read's references are kept as a set), otherwise
    not known (``new`` is then ``False``).
    """

    NEW_TASKS_UP_TO = 1000

    def __init__(self, limit: int, choose: random.Random) -> None:
        self.limit = limit
        self._choose = choose
        self._previous: Optional[Set[Any]] = None

    def _remember(self, references: List[Any]) -> Optional[Set[Any]]:
        previous = self._previous
        self._previous = None
        if len(references) <= self.NEW_TASKS_UP_TO:
            with contextlib.suppress(TypeError):  # a dead reference never hashed
                self._previous = set(references)
        return previous

    def prime(self) -> None:
        """Remember the tasks pending now (at the start of a window)."""
        self._remember(_all_references())

    def scan(self) -> Tuple[List[SuspendedTask], float]:
        """The suspended tasks looked at, and how many tasks each stands for."""
        references = _all_references()
        previous = self._remember(references)
        scale = 1.0
        if len(references) > self.limit:
            scale = len(references) / self.limit
            references = self._choose.sample(references, self.limit)
        found: List[SuspendedTask] = []
        seen = set()
        for reference in references:
            task = reference() if isinstance(reference, weakref.ref) else reference
            if task is None or id(task) in seen:
                continue
            seen.add(id(task))
            try:
                if task.done():
                    continue
                coro = task.get_coro()
                if coro is None or getattr(coro, "cr_running", False):
                    continue
                if getattr(coro, "gi_running", False):
                    continue
                thread = getattr(task.get_loop(), "_thread_id", None)
                if thread is None:  # its loop is not running
                    continue
                new = previous is not None and reference not in previous
                found.append(
                    SuspendedTask(task.get_name(), thread, coro, id(task), weakref.ref(task), new)
                )
            except Exception:  # a task-like object with another shape: not ours to judge
                continue
        return found, scale


def running_task_ids() -> Dict[int, int]:
    """``{thread ident: id() of the task running on it}`` for threads running a loop now."""
    tasks_module = _asyncio_tasks()
    current = None if tasks_module is None else getattr(tasks_module, "_current_tasks", None)
    if not current:
        return {}
    result: Dict[int, int] = {}
    for loop, task in dict(current).items():  # a dict copy is atomic under the GIL
        thread = getattr(loop, "_thread_id", None)
        if thread is not None:
            result[thread] = id(task)
    return result


def current_task_id() -> int:
    """``id()`` of the asyncio task running on the calling thread, 0 outside any task.

    Called on the request path (each span start): asyncio is not imported for
    it, only used once the application has imported it.
    """
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return 0
    loop = asyncio.events._get_running_loop()
    if loop is None:
        return 0
    task = asyncio.current_task(loop)
    return 0 if task is None else id(task)
