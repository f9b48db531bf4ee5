"""What a profile holds: the one list of profile kinds.

Its own module so that naming, formats and profiles can all use it without
importing one another.
"""

from __future__ import annotations

import enum


class ProfileKind(str, enum.Enum):
    """What was profiled. The value is the prefix of the exported object's name."""

    CPU_PROFILE = "CPU_PROFILE"
    HEAP_PROFILE = "HEAP_PROFILE"
    HEAP_SNAPSHOT = "HEAP_SNAPSHOT"

    def __str__(self) -> str:
        return self.value
