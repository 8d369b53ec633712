"""The safety arithmetic of a lease held for the serving side (pure).

etcd expires a lease ``ttl`` seconds (etcd leader's clock) after the last renew it
*received*. The holder only knows when it *sent* that renew (its own monotonic clock),
which is no later than etcd's receipt. If both clocks may run off true rate by at most
``drift`` (a relative bound: 0.01 = 1%), the lease is certainly alive until::

    sent + ttl * (1 - drift) / (1 + drift)          (holder's clock)

The holder must have *finished* fencing by then: it starts ``fence_budget`` seconds earlier
(stop releasing output, then kill QEMU and reap it), and one ``check_period`` earlier still
because it looks at the clock only that often. An etcd leader change only lengthens leases
(the new leader restarts every lease's TTL), so it never breaks the bound.

What this cannot cover, and why fencing tokens exist too: a process paused *between* its
last check and a write (a stopped process, a swapped page) acts late. The output gate is
checked on every release, and agents refuse commands with stale tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from colopp.errors import ConfigError

#: Default relative bound on clock rate error between a holder and etcd's leader. NTP keeps
#: hosts within 500 ppm; 1% leaves room for a VM host's clocksource misbehaving.
DEFAULT_DRIFT = 0.01
#: etcd's smallest lease TTL with its default election timeout (1 s): 1.5 elections, rounded up.
ETCD_MIN_TTL = 2


@dataclass(frozen=True)
class LeaseTiming:
    """Timings of one right to serve (seconds).

    Raises:
        ConfigError: a timing is not positive, or two renew attempts (each allowed
            ``request_timeout``) do not fit before fencing must start.
    """

    ttl: int = 3
    renew_interval: float = 0.5
    request_timeout: float = 0.4
    fence_budget: float = 0.5
    check_period: float = 0.05
    drift: float = DEFAULT_DRIFT

    def __post_init__(self) -> None:
        if self.ttl < ETCD_MIN_TTL:
            raise ConfigError(f"lease ttl {self.ttl}s: etcd grants at least {ETCD_MIN_TTL}s")
        for name in ("renew_interval", "request_timeout", "fence_budget", "check_period"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"lease {name} must be positive")
        if not 0 <= self.drift < 0.5:
            raise ConfigError(f"clock drift bound {self.drift} must be in [0, 0.5)")
        need = 2 * self.renew_interval + self.request_timeout
        if need >= self.fence_after:
            raise ConfigError(
                f"lease ttl {self.ttl}s too short: two renew attempts need {need:.2f}s "
                f"but fencing starts {self.fence_after:.2f}s after a renew is sent"
            )

    @property
    def guaranteed(self) -> float:
        """Seconds after sending a renew that the lease is certainly alive (holder's clock)."""
        return self.ttl * (1 - self.drift) / (1 + self.drift)

    @property
    def fence_after(self) -> float:
        """Seconds after sending the last successful renew that fencing starts."""
        return self.guaranteed - self.fence_budget - self.check_period

    @property
    def margin(self) -> float:
        """How much earlier than the nominal TTL the holder starts fencing (seconds)."""
        return self.ttl - self.fence_after
