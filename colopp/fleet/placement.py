"""Where each protection's two sides run, over a pool of hosts (pure).

Rules, in order:
1. never both sides of one protection on one host;
2. only healthy hosts, with a free protection slot (each host has ``slots``);
3. spread: the host with the fewest sides first, ties broken by fewest primaries for the
   primary and then by name, so the same pool and load always give the same answer.

:func:`new_secondary` answers, for one protection whose serving side stays, where its
next secondary goes (the supervisor of each protection asks it on its own, when the host it
lost stays unreachable). :func:`replace_lost_host` answers, when a host dies, what
happens to every protection that had a side there: a lost primary means its secondary
takes over (it becomes the primary), and every protection gets a new secondary on another
healthy host.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from colopp.errors import ConfigError


@dataclass(frozen=True)
class PoolHost:
    """One host of the pool."""

    name: str
    healthy: bool = True
    slots: int = 8


@dataclass(frozen=True)
class Sides:
    """Where one protection runs: its primary host and its secondary host (or None)."""

    primary: str
    secondary: str | None


@dataclass(frozen=True)
class Move:
    """What a lost host means for one protection."""

    protection: str
    failover: bool  # its primary was lost: the secondary takes over
    sides: Sides  # where it runs once re-protected


def _load(placed: Mapping[str, Sides]) -> tuple[Counter[str], Counter[str]]:
    sides: Counter[str] = Counter()
    primaries: Counter[str] = Counter()
    for where in placed.values():
        sides[where.primary] += 1
        primaries[where.primary] += 1
        if where.secondary is not None:
            sides[where.secondary] += 1
    return sides, primaries


def _candidates(
    pool: Iterable[PoolHost], placed: Mapping[str, Sides], exclude: set[str], for_primary: bool
) -> list[str]:
    sides, primaries = _load(placed)
    hosts = [h for h in pool if h.healthy and h.name not in exclude and sides[h.name] < h.slots]
    key = (
        (lambda h: (sides[h.name], primaries[h.name], h.name))
        if for_primary
        else (lambda h: (sides[h.name], -primaries[h.name], h.name))
    )
    return [h.name for h in sorted(hosts, key=key)]


def check_pool(pool: Iterable[PoolHost]) -> list[PoolHost]:
    """The pool as a list, checked.

    Raises:
        ConfigError: duplicate host names, or a host with fewer than one slot.
    """
    hosts = list(pool)
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise ConfigError(f"pool hosts must have distinct names: {names}")
    for host in hosts:
        if host.slots < 1:
            raise ConfigError(f"pool host {host.name} needs at least one slot")
    return hosts


def place(pool: Iterable[PoolHost], placed: Mapping[str, Sides]) -> Sides:
    """Hosts for a new protection, given where the others run.

    Raises:
        ConfigError: fewer than two healthy hosts with a free slot.
    """
    hosts = check_pool(pool)
    primaries = _candidates(hosts, placed, set(), for_primary=True)
    if not primaries:
        raise ConfigError("no healthy host of the pool has a free slot for a primary")
    primary = primaries[0]
    secondaries = _candidates(hosts, placed, {primary}, for_primary=False)
    if not secondaries:
        raise ConfigError("the pool has no second healthy host with a free slot")
    return Sides(primary, secondaries[0])


def new_secondary(
    pool: Iterable[PoolHost],
    placed: Mapping[str, Sides],
    protection: str,
    serving: str,
    avoid: Iterable[str] = (),
) -> str | None:
    """The host for ``protection``'s new secondary, ``serving`` being its serving host.

    ``placed`` is where every protection runs now (this one's entry is replaced by its
    serving side alone); ``avoid`` names hosts not to use (the lost one, hosts that did
    not answer). None: no healthy host with a free slot is left.
    """
    now = {name: where for name, where in placed.items() if name != protection}
    now[protection] = Sides(serving, None)
    choices = _candidates(check_pool(pool), now, {serving, *avoid}, for_primary=False)
    return choices[0] if choices else None


def replace_lost_host(
    pool: Iterable[PoolHost], placed: Mapping[str, Sides], lost: str
) -> list[Move]:
    """Every protection with a side on ``lost``: failover if needed, and a new secondary.

    A protection for which no healthy host is left stays unprotected (secondary None).
    """
    hosts = [PoolHost(h.name, h.healthy and h.name != lost, h.slots) for h in check_pool(pool)]
    now = {name: where for name, where in placed.items()}
    moves: list[Move] = []
    for name in sorted(placed):
        where = placed[name]
        if lost not in (where.primary, where.secondary):
            continue
        failover = where.primary == lost
        primary = where.secondary if failover else where.primary
        if primary is None:  # it had no secondary: nothing survives to serve
            now.pop(name)
            continue
        now[name] = Sides(primary, None)
        choices = _candidates(hosts, now, {primary}, for_primary=False)
        now[name] = Sides(primary, choices[0] if choices else None)
        moves.append(Move(name, failover, now[name]))
    return moves
