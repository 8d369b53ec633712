"""The comparator's pure decision core: frames in, actions out. No sockets, no clock.

Time is always passed in (``now``, seconds, any monotonic origin), so tests drive timeouts with
a fake clock. The shell feeds every frame read from ``primary_in`` / ``secondary_in`` and acts
on the returned :mod:`~colopp.compare.verdict` actions.

Behaviour follows QEMU's colo-compare (``net/colo-compare.c``): TCP payload compared per
connection over aligned sequence ranges, with its ACK rule; UDP, ICMP and other IP payloads
compared per flow, over IPv4 and IPv6 alike (:mod:`~colopp.compare.ipv6`); primary frames of
other EtherTypes (and IPv6 neighbour discovery / MLD) pass through, counted per EtherType, and
secondary ones are dropped; an
unmatched frame older than ``compare_timeout`` forces a checkpoint; at a checkpoint held
primary frames are released and secondary output discarded.

COLO++ pre-release (:mod:`~colopp.compare.prerelease`) is off unless a policy is given; then
:meth:`Comparator.feed_client` also takes the client's frames for it. Nothing leaves early
while a checkpoint is pending: the secondary is known to differ then.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from colopp.compare.ack_lower import catch_up, settle_all
from colopp.compare.client_runs import feed_client_runs
from colopp.compare.config import CompareConfig
from colopp.compare.counters import Counters
from colopp.compare.early import apply_receipts, offer_early, offer_tail
from colopp.compare.flows import DatagramFlow
from colopp.compare.held import ClientAwarePolicy, HeldFrame, NeverPreRelease, ReleasePolicy
from colopp.compare.ipv6 import is_ipv6_key
from colopp.compare.packet import (
    PASSTHROUGH,
    SYN,
    TCP,
    FlowKey,
    Malformed,
    Packet,
    parse_frame,
    parse_plain_tcp,
)
from colopp.compare.receipts import Receipt
from colopp.compare.release import release_matched, release_one
from colopp.compare.spans import Span
from colopp.compare.sweep import forget_expired, make_room
from colopp.compare.tcp import TcpConnection
from colopp.compare.tcp_check import PRERELEASE_MISMATCH
from colopp.compare.tcp_fast import MATCHED, NOT_HANDLED, primary_in_order, secondary_in_order
from colopp.compare.tcp_waits import head_waits
from colopp.compare.triggers import CheckpointTrigger, held_too_long, secondary_overdue
from colopp.compare.verdict import Action, Drop, PreRelease, Release, group_frames

SWEEP_INTERVAL_S = 1.0


class Comparator:
    """Compares the primary's and the secondary's output and decides what may leave.

    Never raises on frame content: malformed frames become :class:`Drop` actions. After a
    divergence exactly one :class:`Checkpoint` is returned; the next one only after
    :meth:`checkpoint_done` (or a ``checkpoint_retry`` from :meth:`tick`).
    """

    def __init__(
        self,
        config: CompareConfig | None = None,
        policy: ReleasePolicy | None = None,
        *,
        fast_path: bool = True,
    ):
        self.config = config or CompareConfig()
        self.policy: ReleasePolicy = policy or NeverPreRelease()
        # The default policy never answers yes: do not even ask it on the hot path.
        self._policy: ReleasePolicy | None = None if policy is None else policy
        self._client_policy = policy if isinstance(policy, ClientAwarePolicy) else None
        # Pre-release pauses while the oldest unmatched primary frame is older than this
        # (the secondary lags): see PreReleaseConfig.lag_budget_ms.
        self._lag_budget: float | None = getattr(policy, "lag_budget_s", None)
        self._lagging = False
        # The in-order TCP fast paths assume nothing is ever pre-released. ``fast_path=False``
        # forces the general path everywhere (tests compare the two). With a policy the
        # primary's in-order segment still takes it: one that matches on arrival is released
        # (nothing waits, so nothing is offered early), one that must wait is queued and
        # offered early exactly as the general path would (:meth:`_offer_queued`); the
        # secondary's frames take the general path (the fast one releases without offering).
        self._fast = fast_path and policy is None
        self._fast_primary = fast_path
        self.counters = Counters()
        self._max_frames = self.config.max_queue_frames
        self._max_bytes = self.config.max_queue_bytes
        self._tcp: dict[FlowKey, TcpConnection] = {}
        self._flows: dict[FlowKey, DatagramFlow] = {}
        # Every held primary frame in arrival order (released ones are skipped lazily).
        self._held: deque[HeldFrame] = deque()
        self._trigger = CheckpointTrigger(self.counters)
        # A checkpoint started (STOP) and has not ended: secondary output is the next epoch's.
        self._stop_seen = False
        self._last_sweep = float("-inf")

    @property
    def awaiting_checkpoint(self) -> bool:
        """True between a requested checkpoint and :meth:`checkpoint_done`."""
        return self._trigger.since is not None

    # ---- input ---------------------------------------------------------------------------

    def feed_primary(self, frame: bytes, now: float, vnet_hdr_len: int = 0) -> list[Action]:
        """Take one frame of the primary guest's output; return what to do now."""
        c = self.counters
        size = len(frame)
        c.primary_frames_in += 1
        c.primary_bytes_in += size
        fields = parse_plain_tcp(frame, vnet_hdr_len) if self._fast_primary else None
        if fields is None:
            return self._hold_primary(frame, now, vnet_hdr_len, parse_frame(frame, vnet_hdr_len))
        key, seq, ack, flags, payload_start, payload_end = fields
        conn = self._tcp.get(key)
        if conn is None:
            return self._hold_primary(frame, now, vnet_hdr_len, Packet(TCP, *fields))
        outcome = primary_in_order(
            conn, frame, vnet_hdr_len, now, seq, ack, flags, payload_start, payload_end
        )
        if outcome == NOT_HANDLED:
            return self._hold_primary(frame, now, vnet_hdr_len, Packet(TCP, *fields))
        conn.last_seen = now
        if outcome == MATCHED:
            # Held and released at once: the held gauges do not move, the wait was 0 s.
            c.matched_frames += 1
            c.released_frames += 1
            c.released_bytes += size
            c.hold_time_counts[0] += 1
            if self._policy is not None and payload_end > payload_start:
                c.matched_on_arrival += 1  # as the general path counts it
            actions: list[Action] = [Release([frame], vnet_hdr_len)]
        else:
            self._held.append(conn.queue[-1])
            c.held_frames += 1
            c.held_bytes += size
            actions = [] if self._policy is None else self._offer_queued(conn, now)
        if c.held_frames > self._max_frames or c.held_bytes > self._max_bytes:
            actions += self._trigger.request("queue_overflow", now)
        return actions

    def feed_secondary(self, frame: bytes, now: float, vnet_hdr_len: int = 0) -> list[Action]:
        """Take one frame of the secondary guest's output; return what to do now.

        Secondary frames are never sent out: they only let primary frames go.
        """
        c = self.counters
        c.secondary_frames_in += 1
        c.secondary_bytes_in += len(frame)
        fields = parse_plain_tcp(frame, vnet_hdr_len) if self._fast_primary else None
        pkt: Packet
        if fields is None:
            parsed = parse_frame(frame, vnet_hdr_len)
            if isinstance(parsed, Malformed):
                c.malformed["secondary_" + parsed.reason] += 1
                return [Drop(parsed.reason, "secondary")]
            if parsed.kind == PASSTHROUGH:
                c.secondary_dropped += 1
                return []
            pkt = parsed
        if (
            c.held_secondary_frames >= self._max_frames
            or c.held_secondary_bytes + len(frame) > self._max_bytes
        ):
            c.secondary_dropped += 1
            return self._trigger.request("queue_overflow", now)
        if fields is not None:
            key, seq, ack, flags, payload_start, payload_end = fields
            conn = self._tcp.get(key)
            head = None
            if conn is not None and self._fast:
                head = secondary_in_order(
                    conn, frame, now, seq, ack, flags, payload_start, payload_end
                )
            if head is not None and conn is not None:
                conn.last_seen = now
                if not conn.queue or head_waits(conn):
                    # The next segment (if any) waits: pump would stop at once.
                    return [self._release_one(head, now)]
                released = [head]
                pre: list[HeldFrame] = []
                reason = conn.pump(c, None, now, released, pre)
                if reason is not None:
                    return self._finish(released, pre, reason, now)
                return self._release_matched(released, now)
            pkt = Packet(TCP, *fields)
        return self._compare_secondary(frame, now, pkt)

    def _hold_primary(
        self, frame: bytes, now: float, vnet_hdr_len: int, pkt: Packet | Malformed
    ) -> list[Action]:
        """The general path of :meth:`feed_primary`, after parsing."""
        c = self.counters
        if isinstance(pkt, Malformed):
            c.malformed["primary_" + pkt.reason] += 1
            return [Drop(pkt.reason, "primary")]
        if pkt.kind == PASSTHROUGH:
            c.count_passthrough(pkt.key[0])
            c.released_frames += 1
            c.released_bytes += len(frame)
            return [Release([frame], vnet_hdr_len)]
        held = HeldFrame.from_packet(frame, vnet_hdr_len, now, pkt)
        self._held.append(held)
        c.held_frames += 1
        c.held_bytes += len(frame)
        released: list[HeldFrame] = []
        pre: list[HeldFrame] = []
        birth = False
        if pkt.kind == TCP:
            conn = self._tcp.get(pkt.key) or self._open_tcp(pkt.key, now)
            conn.last_seen = now
            if pkt.flags & SYN and is_ipv6_key(pkt.key):  # never young: README, IPv6
                conn.syn_waits_checkpoint = birth = True
            # Behind a waiting head nothing can move: the head waits for the secondary.
            at_head = conn.add_primary(held, pkt)
            policy = self._live_policy(now)
            reason = conn.pump(c, policy, now, released, pre) if at_head else None
            if not at_head and policy is not None and offer_tail(conn, held, policy, now):
                pre.append(held)
        else:
            flow = self._flows.get(pkt.key) or self._open_flow(pkt.key, pkt.kind, now)
            flow.last_seen = now
            flow.primary.append(held)
            reason = flow.pump(released)
        actions = self._finish(released, pre, reason, now) if released or pre or reason else []
        if birth:
            actions += self._trigger.request_birth(now)
        if c.held_frames > self._max_frames or c.held_bytes > self._max_bytes:
            actions += self._trigger.request("queue_overflow", now)
        return actions

    def _offer_queued(self, conn: TcpConnection, now: float) -> list[Action]:
        """What the general path does after queueing an in-order primary segment at the tail
        of ``conn`` (``queue[-1]``, just added to the held frames): pump a new head, or offer
        a frame behind a waiting head early."""
        queue = conn.queue
        policy = self._live_policy(now)
        released: list[HeldFrame] = []
        pre: list[HeldFrame] = []
        reason = None
        if len(queue) == 1:
            reason = conn.pump(self.counters, policy, now, released, pre)
        elif policy is not None and offer_tail(conn, queue[-1], policy, now):
            held = queue[-1]  # the common case of a download: _finish's work for one frame
            c = self.counters
            c.pre_released_frames += 1
            c.released_frames += 1
            c.released_bytes += len(held.frame)
            return [PreRelease([held.frame], held.vnet_hdr_len)]
        return self._finish(released, pre, reason, now) if released or pre or reason else []

    def _compare_secondary(self, frame: bytes, now: float, pkt: Packet) -> list[Action]:
        """The general path of :meth:`feed_secondary`, after parsing and the queue check."""
        c = self.counters
        released: list[HeldFrame] = []
        pre: list[HeldFrame] = []
        reason: str | None
        if pkt.kind == TCP:
            conn = self._tcp.get(pkt.key) or self._open_tcp(pkt.key, now)
            conn.last_seen = now
            if not conn.add_secondary(pkt, frame, now):
                c.secondary_dropped += 1
            reason = conn.pump(c, self._live_policy(now), now, released, pre)
            if conn.ack_low is not None:  # the secondary's ACK may let a lowered one up
                bare = catch_up(conn, released, pre)
                if bare is not None:
                    return [*self._finish(released, pre, reason, now), bare]
        else:
            flow = self._flows.get(pkt.key) or self._open_flow(pkt.key, pkt.kind, now)
            flow.last_seen = now
            flow.add_secondary(frame[pkt.payload_start : pkt.payload_end], now)
            reason = flow.pump(released)
        if pre or reason is not None:
            return self._finish(released, pre, reason, now)
        return self._release_matched(released, now) if released else []

    def client_view_idle(self) -> bool:
        """True when reading the client copy before a decision changes nothing until the
        next checkpoint: no policy follows requests, or the one that does is disarmed for
        every read (its copy is still read on every tick and at a checkpoint's STOP)."""
        policy = self._client_policy
        return policy is None or policy.view_idle()

    def feed_clients(self, buf: bytes, spans: list[Span], now: float) -> list[Action]:
        """:meth:`feed_client` for each frame of ``buf`` (``spans``: where they lie, as
        :class:`~colopp.ingress.wire.Splitter` cuts them), in order; every action, in order.
        A lost connection's segments are read in place and counted in runs
        (:mod:`~colopp.compare.client_runs`)."""
        policy = self._client_policy
        if policy is None:
            return []
        return feed_client_runs(self.feed_client, policy, self.counters, buf, spans, now)

    def feed_client(self, frame: bytes, now: float, vnet_hdr_len: int = 0) -> list[Action]:
        """Take one client->guest frame (a copy of the guest's input); return what to do now.

        Only a pre-release policy that follows requests looks at it; it may let more held
        output leave early. Client frames are never sent out and never compared.
        """
        observer = self._client_policy
        if observer is None:
            return []
        self.counters.client_frames_in += 1
        fields = parse_plain_tcp(frame, vnet_hdr_len)
        pkt: Packet | Malformed
        pkt = Packet(TCP, *fields) if fields is not None else parse_frame(frame, vnet_hdr_len)
        if isinstance(pkt, Malformed) or pkt.kind == PASSTHROUGH:
            return []
        key = observer.observe_client(pkt, frame, now, vnet_hdr_len)
        conn = self._tcp.get(key) if key is not None else None
        policy = self._live_policy(now)
        if conn is None or policy is None or not conn.queue:
            return []
        pre: list[HeldFrame] = []
        offer_early(conn, policy, now, pre, force=True)
        return self._finish([], pre, None, now) if pre else []

    def feed_receipts(self, receipts: list[Receipt], now: float) -> list[Action]:
        """The secondary host's receipts (:mod:`~colopp.compare.receipts`): what leaves
        early may then acknowledge the client bytes it holds."""
        pre: list[HeldFrame] = []
        apply_receipts(self._tcp, receipts, self._live_policy(now), now, pre, self.counters)
        return self._finish([], pre, None, now) if pre else []

    def forget_receipts(self) -> None:
        """The secondary's stream restarted: a new relay holds nothing the old one promised."""
        for conn in self._tcp.values():
            conn.host_held = None

    def client_lost(self) -> None:
        """The copy of the client's frames stopped: the policy must stop relying on it."""
        if self._client_policy is not None:
            self._client_policy.client_lost()

    def _live_policy(self, now: float) -> ReleasePolicy | None:
        # A pending checkpoint means the secondary is known to differ: nothing leaves early.
        if self._trigger.since is not None:
            return None
        budget = self._lag_budget
        if budget is not None:
            self._drop_released_heads()
            held = self._held
            lagging = bool(held) and now - held[0].arrival > budget
            if lagging != self._lagging:
                self._lagging = lagging
                self.counters.prerelease_lag_pauses += lagging
            if lagging:
                return None  # backpressure: the primary's clients wait for the secondary
        return self._policy

    # ---- time and checkpoints ------------------------------------------------------------

    def tick(self, now: float) -> list[Action]:
        """Check timers: compare timeouts, checkpoint retries, idle connection cleanup."""
        trigger = self._trigger
        actions = trigger.retry_due(now, self.config.checkpoint_retry)
        self._drop_released_heads()
        held = self._held
        reason = held_too_long(self.config, self._tcp, held[0] if held else None, now, held)
        if reason is not None:
            actions += trigger.request(reason, now)
        policy = self._client_policy
        if policy is not None and trigger.since is None and policy.rearm_due(now):
            actions += trigger.request_rearm(now)
        if now - self._last_sweep >= SWEEP_INTERVAL_S:
            self._last_sweep = now
            tcp, flows, cfg = self._tcp, self._flows, self.config
            if trigger.since is None and secondary_overdue(cfg, tcp, flows, now):
                actions += trigger.request("secondary_timeout", now)
            forget_expired(tcp, flows, self.counters, cfg, now)
        return actions

    def checkpoint_started(self, now: float) -> None:
        """A checkpoint started: the primary reported STOP and every frame the secondary sent
        before it has been fed (the secondary stops before the primary does, and resumes only
        after it loaded the primary's state).

        From now until :meth:`checkpoint_done`, secondary output is the next epoch's: kept
        apart, never compared against primary output produced before the checkpoint, and
        compared against the primary's output after it. Bytes the secondary sent before the
        STOP are never compared against primary output after the checkpoint.
        """
        self._stop_seen = True
        for conn in self._tcp.values():
            conn.on_stop()
        for flow in self._flows.values():
            flow.on_stop()

    def checkpoint_done(self, now: float) -> list[Action]:
        """A checkpoint finished: the SVM is now a copy of the PVM.

        Releases every held primary frame in arrival order (as colo-compare's flush does),
        discards the secondary's output of the old epoch and re-bases each connection so
        frames in flight across the checkpoint are not taken for divergence. Secondary
        output read since :meth:`checkpoint_started` is kept for the new epoch. Without that
        call the split is a guess (see :meth:`SecondaryStream.restart_at`): the shell always
        makes it when it has its QMP monitor.
        """
        c = self.counters
        flushed = [h for h in self._held if not h.released]
        for held in flushed:
            held.released = True
            c.observe_hold(now - held.arrival)
        self._held.clear()
        c.flushed_frames += len(flushed)
        stop_seen = self._stop_seen
        self._stop_seen = False
        owing = {k: conn for k, conn in self._tcp.items() if conn.ack_low is not None}
        for conn in self._tcp.values():
            conn.on_checkpoint(stop_seen)
        for flow in self._flows.values():
            flow.on_checkpoint()
        c.held_frames = c.held_bytes = 0
        c.checkpoints_done += 1
        self._trigger.done()
        if self._client_policy is not None:
            self._client_policy.on_checkpoint()
        out = [h for h in flushed if not h.pre_released]
        c.released_frames += len(out)
        c.released_bytes += sum(len(h.frame) for h in out)
        actions = group_frames(out, Release)
        if owing:  # the secondary now holds what the primary acknowledged: ACKs still owed
            actions += settle_all(owing, out)
        return actions

    def snapshot(self) -> dict[str, Any]:
        """Counters plus the core's state, JSON-serialisable."""
        snap = self.counters.snapshot()
        snap["awaiting_checkpoint"] = self.awaiting_checkpoint
        snap["tcp_connections"] = len(self._tcp)
        snap["datagram_flows"] = len(self._flows)
        # Of the primary frames that went out after comparison or early, the early share.
        compared_out = self.counters.released_frames - self.counters.passthrough_frames
        pre = self.counters.pre_released_frames
        snap["pre_release_ratio"] = pre / compared_out if compared_out > 0 else 0.0
        if self._client_policy is not None:
            snap["pre_release"] = self._client_policy.snapshot()
        return snap

    # ---- internals -----------------------------------------------------------------------

    def _finish(
        self, released: list[HeldFrame], pre: list[HeldFrame], reason: str | None, now: float
    ) -> list[Action]:
        c = self.counters
        actions: list[Action] = []
        if released:  # in stream order: the compared head goes before what waits behind it
            actions += self._release_matched(released, now)
        if pre:
            c.pre_released_frames += len(pre)
            c.released_frames += len(pre)
            c.released_bytes += sum(len(h.frame) for h in pre)
            actions += group_frames(pre, PreRelease)
        if reason is not None:
            if reason == PRERELEASE_MISMATCH:
                c.prerelease_mismatches += 1
            actions += self._trigger.request(reason, now)
        return actions

    def _release_matched(self, released: list[HeldFrame], now: float) -> list[Action]:
        return release_matched(self.counters, self._held, released, now, self._policy is not None)

    def _release_one(self, held: HeldFrame, now: float) -> Release:
        return release_one(self.counters, self._held, held, now, self._policy is not None)

    def _drop_released_heads(self) -> None:
        held = self._held
        while held and held[0].released:
            held.popleft()

    def _open_tcp(self, key: FlowKey, now: float) -> TcpConnection:
        make_room(self._tcp, self._flows, self.counters)
        cfg = self.config
        conn = TcpConnection(
            key, now, self.counters, cfg.max_out_of_order_segments, cfg.secondary_gap_wait
        )
        if self._stop_seen:
            conn.on_stop()
        self._tcp[key] = conn
        self.counters.connections_open = len(self._tcp)
        return conn

    def _open_flow(self, key: FlowKey, kind: int, now: float) -> DatagramFlow:
        make_room(self._tcp, self._flows, self.counters)
        flow = DatagramFlow(key, kind, now, self.counters)
        if self._stop_seen:
            flow.on_stop()
        self._flows[key] = flow
        return flow
