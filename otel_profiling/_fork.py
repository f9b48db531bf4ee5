"""Renewing per-process state in a forked child.

After ``os.fork()`` only the forking thread exists in the child: a lock held
by another thread of the parent stays held for good, the parent's worker
threads are gone, and its counters describe the parent's work. Objects that
own such state register a ``renew`` callback here; it runs in every child,
once per live object (held weakly, so registering never keeps one alive).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Any, Callable, Dict, Tuple

_logger = logging.getLogger(__name__)

_Key = Tuple[int, Callable[[Any], None]]
_renewers: Dict[_Key, weakref.ref[Any]] = {}
_guard = threading.Lock()
_renewal_locks: Dict[int, threading.Lock] = {}


def renew_after_fork(owner: Any, renew: Callable[[Any], None]) -> None:
    """Call ``renew(owner)`` in each forked child while ``owner`` is alive."""
    key = (id(owner), renew)

    def forget(ref: weakref.ref[Any]) -> None:
        if _renewers.get(key) is ref:
            del _renewers[key]

    with _guard:
        _renewers[key] = weakref.ref(owner, forget)


def renewal_lock(pid: int) -> threading.Lock:
    """A lock of process ``pid`` only, for renewing state where the at-fork hooks did not run.

    A lock inherited from the parent may be held for good; this one is made
    in the process that uses it, once (``dict.setdefault`` is atomic), and
    the parent's are dropped with it.
    """
    lock = _renewal_locks.get(pid)
    if lock is None:
        lock = _renewal_locks.setdefault(pid, threading.Lock())
        for other in [p for p in list(_renewal_locks) if p != pid]:
            _renewal_locks.pop(other, None)
    return lock


def _renew_all() -> None:
    global _guard
    _guard = threading.Lock()  # may have been held by another thread of the parent
    for (_, renew), ref in list(_renewers.items()):
        owner = ref()
        if owner is None:
            continue
        try:
            renew(owner)
        except Exception:  # one broken owner must not leave the others stale
            _logger.exception("Renewing %r after fork failed.", owner)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_all)
