"""A trigger driven by the test itself, so a test decides exactly when a profile runs."""

from __future__ import annotations

from typing import List

from otel_profiling.profile import Profile
from otel_profiling.triggers.base import Trigger


class ManualTrigger(Trigger):
    name = "manual"

    def start(self) -> List[Profile]:
        assert self.target is not None, "agent not started"
        return self.target.start("test")

    def stop(self) -> List[Profile]:
        assert self.target is not None, "agent not started"
        return self.target.stop("test")
