"""The batch processor's queue and its accounting.

Bounded by count and by bytes; when full the oldest profile is dropped (and
counted in ``dropped``), as is every profile offered once the queue is closed
(the processor shuts down). Each profile queued gets a sequence number, and
each one that reaches a counter (exported, spooled, failed, dropped, error) is
*settled*: a flush waits until everything queued before it is settled. The
bytes of a batch being exported, and of profiles being re-sent from the spool,
still count against the bound.

Not thread-safe on its own: the processor and its collaborators call it with
the processor's lock held.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Deque, List, Optional, Tuple

from otel_profiling.profile import Profile


class FlushRequest:
    """A flush: done once everything queued before it has been settled."""

    __slots__ = ("upto", "done")

    def __init__(self, upto: int) -> None:
        self.upto = upto
        self.done = threading.Event()


class ProfileQueue:
    """Profiles waiting for export, with the bytes held and the settle count."""

    def __init__(self, max_size: int, max_bytes: int) -> None:
        self.max_size = max_size
        self.max_bytes = max_bytes
        # each queued profile with when it came: a batch is due by its oldest profile's age
        self._items: Deque[Tuple[Profile, float]] = collections.deque()
        self.bytes = 0  # queued profiles plus those taken and not yet released
        self.enqueued = 0  # sequence number of the last profile queued
        self.settled = 0  # how many queued profiles have reached their counter
        self.dropped = 0  # queue full, or offered once closed
        self.closed = False
        self._flushes: List[FlushRequest] = []

    def __len__(self) -> int:
        return len(self._items)

    @property
    def oldest_at(self) -> Optional[float]:
        """``time.monotonic()`` when the oldest profile still queued came; ``None`` if empty.

        Read from the queue itself, so that after a drop or a partial take the
        profiles left wait their own delay, not that of one already gone.
        """
        return self._items[0][1] if self._items else None

    def close(self) -> None:
        """Take no more profiles: each one offered from now on is dropped."""
        self.closed = True

    def put(self, profile: Profile) -> bool:
        """Queue ``profile``, dropping the oldest while full; ``False`` (dropped) once closed.

        A profile larger than the byte bound is still taken when the queue is empty.
        """
        if self.closed:
            self.dropped += 1
            return False
        size = len(profile.data)
        dropped = 0
        while self._items and (
            len(self._items) >= self.max_size or self.bytes + size > self.max_bytes
        ):
            old, _ = self._items.popleft()
            self.bytes -= len(old.data)
            dropped += 1
        self.settled += dropped
        self.dropped += dropped
        self._items.append((profile, time.monotonic()))
        self.bytes += size
        self.enqueued += 1
        return True

    def take(self, limit: int) -> List[Profile]:
        """Up to ``limit`` profiles, oldest first; their bytes count until ``release``."""
        batch: List[Profile] = []
        while self._items and len(batch) < limit:
            batch.append(self._items.popleft()[0])
        return batch

    def take_all(self) -> List[Profile]:
        return self.take(len(self._items))

    def release(self, profiles: List[Profile]) -> None:
        """Settled profiles no longer count against the byte bound."""
        self.bytes -= sum(len(p.data) for p in profiles)

    def reserve(self, share: int) -> int:
        """Hold up to ``share`` bytes of the bound (for re-sends); returns what was held."""
        held = max(min(share, self.max_bytes - self.bytes), 0)
        self.bytes += held
        return held

    def unreserve(self, held: int) -> None:
        self.bytes -= held

    def settle(self, count: int) -> None:
        self.settled += count

    @property
    def all_settled(self) -> bool:
        return self.enqueued == self.settled

    # -- flushes ---------------------------------------------------------------
    def add_flush(self) -> FlushRequest:
        """A flush of everything queued so far, pending until ``complete_flushes`` sees it done."""
        flush = FlushRequest(self.enqueued)
        self._flushes.append(flush)
        return flush

    def cancel_flush(self, flush: FlushRequest) -> None:
        self._flushes.remove(flush)

    @property
    def flushing(self) -> bool:
        """A flush is pending: the worker sends at once, without waiting for a full batch."""
        return bool(self._flushes)

    def complete_flushes(self) -> None:
        """Mark done each pending flush whose profiles are all settled."""
        pending = []
        for flush in self._flushes:
            if self.settled >= flush.upto:
                flush.done.set()
            else:
                pending.append(flush)
        self._flushes = pending

    def end_flushes(self) -> None:
        """Shutdown: wake every waiting flush, done or not (its caller checks its timeout)."""
        for flush in self._flushes:
            flush.done.set()
        self._flushes = []
