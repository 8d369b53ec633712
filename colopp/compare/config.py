"""Settings of the comparator core (pure data; the shell builds it from its CLI flags)."""

from __future__ import annotations

from dataclasses import dataclass

from colopp.errors import ConfigError

#: colo-compare's own default ``compare_timeout`` (DEFAULT_TIME_OUT_MS in net/colo-compare.c).
DEFAULT_COMPARE_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class CompareConfig:
    """Limits and timers of the comparator core.

    ``compare_timeout``: a primary frame (or secondary output) left unmatched this long forces
    a checkpoint. ``max_queue_frames`` / ``max_queue_bytes``: held frames per side before a
    ``queue_overflow`` checkpoint. ``checkpoint_retry``: re-ask for a checkpoint that has not
    completed after this long. ``idle_timeout``: forget a quiet connection with nothing held.
    ``closed_linger``: keep a closed TCP connection this long for retransmissions.
    ``secondary_timeout``: also checkpoint when secondary output stays unmatched (as
    colo-compare does).
    """

    compare_timeout: float = DEFAULT_COMPARE_TIMEOUT_S
    max_queue_frames: int = 16384
    max_queue_bytes: int = 64 * 1024 * 1024
    checkpoint_retry: float = DEFAULT_COMPARE_TIMEOUT_S
    idle_timeout: float = 120.0
    closed_linger: float = 10.0
    secondary_timeout: bool = True
    max_out_of_order_segments: int = 256

    def __post_init__(self) -> None:
        """Raises ConfigError on a non-positive timer or limit."""
        for name in ("compare_timeout", "checkpoint_retry", "idle_timeout", "closed_linger"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        for name in ("max_queue_frames", "max_queue_bytes", "max_out_of_order_segments"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
