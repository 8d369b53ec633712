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
    colo-compare does). ``max_lag`` (None: off): a primary frame still unmatched this long
    means a lagging (semi-active) secondary: checkpoint (reason ``secondary_lag``) so it
    skips its backlog instead of replaying it, and nothing waits on it for long.
    ``max_lag_early`` (None: ``max_lag`` for every frame): with pre-release, frames that left
    early are off the clients' path, so they may wait this long instead; ``max_lag`` then
    bounds only the oldest frame that still holds a client back (a write's answer).
    ``secondary_gap_wait``: a primary segment that waits this long on bytes the secondary
    skipped (it sent later ones) forces a checkpoint at once, instead of a retransmission
    timeout later. ``ack_wait`` (None: off): a primary segment that waited this long only
    for the secondary's ACK (the client gets no acknowledgement meanwhile, so an upload
    stands still until the client's retransmission timeout) forces a checkpoint, reason
    ``secondary_ack_wait``, once the secondary sent duplicate ACKs (it lacks bytes); below
    the client's minimum retransmission timeout (200 ms on Linux).
    """

    compare_timeout: float = DEFAULT_COMPARE_TIMEOUT_S
    max_queue_frames: int = 16384
    max_queue_bytes: int = 64 * 1024 * 1024
    checkpoint_retry: float = DEFAULT_COMPARE_TIMEOUT_S
    idle_timeout: float = 120.0
    closed_linger: float = 10.0
    secondary_timeout: bool = True
    max_out_of_order_segments: int = 256
    max_lag: float | None = None
    max_lag_early: float | None = None
    secondary_gap_wait: float = 0.02
    ack_wait: float | None = 0.1

    def __post_init__(self) -> None:
        """Raises ConfigError on a non-positive timer or limit."""
        for name in (
            "compare_timeout",
            "checkpoint_retry",
            "idle_timeout",
            "closed_linger",
            "secondary_gap_wait",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.ack_wait is not None and not 0 < self.ack_wait <= self.compare_timeout:
            raise ConfigError("ack_wait must be positive and at most compare_timeout")
        if self.max_lag is not None and not 0 < self.max_lag <= self.compare_timeout:
            raise ConfigError("max_lag must be positive and at most compare_timeout")
        early = self.max_lag_early
        if early is not None and (
            self.max_lag is None or not self.max_lag <= early <= self.compare_timeout
        ):
            raise ConfigError("max_lag_early needs max_lag, and lies in max_lag..compare_timeout")
        for name in ("max_queue_frames", "max_queue_bytes", "max_out_of_order_segments"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")


#: HTTP methods a read classifier accepts by default: they must not change server state.
DEFAULT_READ_METHODS: tuple[str, ...] = ("GET", "HEAD")

#: The pre-release rules, by name (see :mod:`colopp.compare.prerelease`).
PRE_RELEASE_RULES: tuple[str, ...] = ("retransmission", "ack_only", "http_read", "resp_read")

#: Scopes of the read rules (see :mod:`colopp.compare.scope`).
PRE_RELEASE_SCOPES: tuple[str, ...] = ("global", "key")

#: A lag budget to try (ms; see ``PreReleaseConfig.lag_budget_ms``): off unless given.
DEFAULT_LAG_BUDGET_MS = 50

#: Guest TCP ports whose connections speak Redis RESP, by default.
DEFAULT_RESP_PORTS: tuple[int, ...] = (6379,)


@dataclass(frozen=True, slots=True)
class PreReleaseConfig:
    """Which primary output may leave before the secondary's copy arrived (COLO++).

    ``rules``: the enabled rules, a subset of :data:`PRE_RELEASE_RULES`; empty means stock
    COLO (nothing leaves early, the core's fast paths stay in use). ``read_prefixes``: path
    prefixes (e.g. ``/kv/``) whose ``read_methods`` requests the operator vouches for: they
    change no state and their answer is a pure function of the state (no clock, no random,
    no per-process counter). ``http_read`` needs at least one prefix. ``rearm_ms``: once a
    write has disarmed the read rule, ask for a checkpoint this many milliseconds later to
    re-arm it (None: wait for the next checkpoint that comes anyway); a trade of checkpoint
    pauses for early answers that pays when writes come in bursts. ``scope``: ``global`` (one
    write disarms every read until the next checkpoint) or ``key`` (a write disarms only the
    reads of its own resource: the operator's promise in :mod:`colopp.compare.prerelease`).
    ``resp_ports``: guest TCP ports whose requests the ``resp_read`` rule parses as Redis
    commands (``http_read`` parses every other connection). ``lower_acks`` (off by default,
    not safe with writers on other connections across a failover: see
    :mod:`colopp.compare.ack_lower`): an early answer whose ACK the secondary has not reached
    leaves with its ACK lowered instead of waiting. ``lag_budget_ms``: pre-release pauses
    while the secondary lags more than this (backpressure, :mod:`colopp.compare.prerelease`;
    None or 0: never, the default: its effect is not measured yet, see the README).
    """

    rules: frozenset[str] = frozenset()
    read_prefixes: tuple[str, ...] = ()
    read_methods: tuple[str, ...] = DEFAULT_READ_METHODS
    rearm_ms: int | None = None
    scope: str = "global"
    resp_ports: tuple[int, ...] = DEFAULT_RESP_PORTS
    lower_acks: bool = False
    lag_budget_ms: int | None = None

    def __post_init__(self) -> None:
        """Raises ConfigError on an unknown rule, a missing prefix or a bad method."""
        unknown = sorted(self.rules - set(PRE_RELEASE_RULES))
        if unknown:
            raise ConfigError(f"unknown pre-release rule(s): {', '.join(unknown)}")
        if "http_read" in self.rules and not self.read_prefixes:
            raise ConfigError("the http_read pre-release rule needs at least one read prefix")
        for prefix in self.read_prefixes:
            if not prefix.startswith("/") or ".." in prefix or not prefix.isascii():
                raise ConfigError(f"read prefix must be an absolute ASCII path: {prefix!r}")
        reads = self.rules & {"http_read", "resp_read"}
        if self.rearm_ms is not None and (self.rearm_ms <= 0 or not reads):
            raise ConfigError("a re-arm delay must be > 0 ms and needs a read rule")
        if self.scope not in PRE_RELEASE_SCOPES:
            raise ConfigError(f"pre-release scope must be one of {', '.join(PRE_RELEASE_SCOPES)}")
        if "resp_read" in self.rules and not self.resp_ports:
            raise ConfigError("the resp_read pre-release rule needs at least one RESP port")
        if self.lag_budget_ms is not None and self.lag_budget_ms < 0:
            raise ConfigError("the pre-release lag budget must be >= 0 ms")
        for port in self.resp_ports:
            if not 0 < port < 65536:
                raise ConfigError(f"RESP port out of range: {port}")
        for method in self.read_methods:
            if not method.isascii() or not method.isalpha() or not method.isupper():
                raise ConfigError(f"read method must be an upper-case token: {method!r}")

    @property
    def enabled(self) -> bool:
        """True when at least one rule may pre-release."""
        return bool(self.rules)
