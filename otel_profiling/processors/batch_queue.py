"""The batch processor's queue and its accounting.

Bounded by count and by bytes; when full the oldest profile is dropped. Each
profile queued gets a sequence number, and each one that reaches a counter
(exported, spooled, failed, dropped, error) is *settled*: a flush waits until
everything queued before it is settled. The bytes of a batch being exported,
and of profiles being re-sent from the spool, still count against the bound.

Not thread-safe on its own: the processor calls it with its lock held.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Deque, List, Optional

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
        self._items: Deque[Profile] = collections.deque()
        self.bytes = 0  # queued profiles plus those taken and not yet released
        self.oldest_at: Optional[float] = None  # when the oldest queued profile came
        self.enqueued = 0  # sequence number of the last profile queued
        self.settled = 0  # how many queued profiles have reached their counter

    def __len__(self) -> int:
        return len(self._items)

    def put(self, profile: Profile) -> int:
        """Queue ``profile``, dropping the oldest while full; returns how many were dropped.

        A profile larger than the byte bound is still taken when the queue is empty.
        """
        size = len(profile.data)
        dropped = 0
        while self._items and (
            len(self._items) >= self.max_size or self.bytes + size > self.max_bytes
        ):
            old = self._items.popleft()
            self.bytes -= len(old.data)
            dropped += 1
        self.settled += dropped
        self._items.append(profile)
        self.bytes += size
        self.enqueued += 1
        if self.oldest_at is None:
            self.oldest_at = time.monotonic()
        return dropped

    def take(self, limit: int) -> List[Profile]:
        """Up to ``limit`` profiles, oldest first; their bytes count until ``release``."""
        batch: List[Profile] = []
        while self._items and len(batch) < limit:
            batch.append(self._items.popleft())
        if not self._items:
            self.oldest_at = None
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

    def flush_request(self) -> FlushRequest:
        return FlushRequest(self.enqueued)

    def flush_done(self, flush: FlushRequest) -> bool:
        return self.settled >= flush.upto
