"""What the host runner raises."""

from __future__ import annotations

from collections.abc import Mapping


class HostRunnerError(RuntimeError):
    pass


class DrainTimeout(HostRunnerError):
    def __init__(self, timeout: float, depths: Mapping[str, int]) -> None:
        self.depths = dict(depths)
        super().__init__(f"queues not drained within {timeout:.1f}s; approximate depths: {self.depths}")
