"""The comparator's flow table upkeep: forgetting idle and closed flows.

Split out of :mod:`~colopp.compare.core`: a flow is forgotten only when nothing of it is held
on either side (a closed TCP connection after ``closed_linger``, others after
``idle_timeout``), or, when the table is full, as soon as it is empty.
"""

from __future__ import annotations

from collections.abc import Callable

from colopp.compare.config import CompareConfig
from colopp.compare.counters import Counters
from colopp.compare.flows import DatagramFlow
from colopp.compare.packet import FlowKey
from colopp.compare.tcp import TcpConnection

Flow = TcpConnection | DatagramFlow
#: Flows (TCP connections and datagram flows) kept at most.
MAX_CONNECTIONS = 65536


def is_empty(flow: Flow) -> bool:
    """Nothing held on either side."""
    if isinstance(flow, TcpConnection):
        return not flow.queue and flow.secondary_held()[0] == 0
    return not flow.primary and flow.secondary_held()[0] == 0


def oldest_secondary(
    tcp: dict[FlowKey, TcpConnection], flows: dict[FlowKey, DatagramFlow]
) -> float | None:
    """Arrival time of the oldest unmatched secondary output of any flow."""
    every: list[Flow] = [*tcp.values(), *flows.values()]
    return min((t for f in every if (t := f.oldest_secondary()) is not None), default=None)


def forget(
    tcp: dict[FlowKey, TcpConnection],
    flows: dict[FlowKey, DatagramFlow],
    counters: Counters,
    doomed: Callable[[Flow], bool],
) -> None:
    """Remove every flow ``doomed`` says, and count them."""
    tcp_gone = [k for k, f in tcp.items() if doomed(f)]
    for key in tcp_gone:
        del tcp[key]
    for key in [k for k, f in flows.items() if doomed(f)]:
        del flows[key]
    counters.connections_closed += len(tcp_gone)
    counters.connections_open = len(tcp)


def make_room(
    tcp: dict[FlowKey, TcpConnection], flows: dict[FlowKey, DatagramFlow], counters: Counters
) -> None:
    """Before a new flow: at :data:`MAX_CONNECTIONS`, forget every empty one (like
    colo-compare's HASHTABLE_MAX_SIZE reset, but only idle state is forgotten)."""
    if len(tcp) + len(flows) >= MAX_CONNECTIONS:
        forget(tcp, flows, counters, is_empty)


def forget_expired(
    tcp: dict[FlowKey, TcpConnection],
    flows: dict[FlowKey, DatagramFlow],
    counters: Counters,
    cfg: CompareConfig,
    now: float,
) -> None:
    """Forget empty flows past their linger (closed TCP) or idle timeout."""

    def expired(f: Flow) -> bool:
        if not is_empty(f):
            return False
        if isinstance(f, TcpConnection) and f.closed_at is not None:
            return now - f.closed_at > cfg.closed_linger
        return now - f.last_seen > cfg.idle_timeout

    forget(tcp, flows, counters, expired)
