"""COLO++ pre-release: which primary output may leave before the secondary's copy arrives.

Why it can be safe. The client may see primary output early only if the secondary, should the
primary die now, would go on exactly as if it had sent that output itself. After a failover
the secondary's TCP stack re-sends its own bytes; the client drops those it already has
without looking at them. So an early segment is safe when (a) the secondary already has every
client byte the segment acknowledges, and (b) the secondary's copy of the segment will be the
same bytes. (b) holds for output that derives only from already-synchronized state: the state
of the last checkpoint plus inputs both guests received.

The rules (composable, any one may grant; :class:`PreReleasePolicy` asks them in order):

``retransmission``
    A segment whose payload bytes were all compared already (a retransmission): the client
    saw these bytes; nothing new leaves.
``ack_only``
    A bare ACK (no payload, no SYN/FIN/RST): it carries no guest data, only "received up to
    ACK", and (a) makes that true of the secondary too. It is no longer stuck behind a
    response that waits for comparison, so a client's upload keeps flowing.
``http_read``
    A response to HTTP read requests (:mod:`~colopp.compare.http_reads`: configured methods on
    configured path prefixes, no body), recognised from the client's request bytes, granted
    only while **no write has been seen since the last checkpoint** on any connection. Reads
    commute with each other, so while only reads arrive the secondary's application state is
    the checkpoint's and its answer to the same request is the same bytes; a write before the
    read could be applied in a different order on the two guests, so one write disarms every
    read until the next checkpoint re-arms them. (A write seen *after* the read does not
    matter: the read's answer is linearizable before it, provided the secondary's service
    also answers the read first. Services do not promise that across connections, so host
    B's relay holds such a write until the secondary guest began answering every read
    delivered before it: :mod:`colopp.ingress.fence`.)
``resp_read``
    The same for Redis: RESP commands on the configured guest ports
    (:mod:`~colopp.compare.resp_reads`: GET, MGET, EXISTS, STRLEN, HGET, HMGET, LRANGE,
    SMEMBERS... are reads of their keys; every other command, and anything malformed, a write).

**Scope** (``PreReleaseConfig.scope``, :mod:`~colopp.compare.scope`). ``global`` (the
default) is the rule above: one write anywhere disarms every read. ``key``: a write disarms
only the reads whose pending answers involve the resource it writes (an HTTP path, a Redis
key), until the next checkpoint. **What the operator promises with ``key``**: (1) every
request touches exactly the resource it names: an HTTP read's answer is a function of the
state of its path alone (the path as sent, without the query string; two spellings are two
resources, so the service must not alias paths), a write to a path changes that path's
state and no other; for Redis, the keys a command names are all it reads or writes (one
database: ``SELECT``, scripts, ``MULTI`` and unknown commands count as writes to everything);
(2) no resource changes by itself (no TTLs / expiring keys, no background jobs that rewrite
resources, no clock- or random-dependent answers, as for ``global``); (3) clients do not
pipeline past a partly received answer (sending a request before the previous answer on the
connection arrived in full while having received part of it): colopp keeps every request
pending whose client sent it without having received anything since its previous request, but
cannot tell a partly received answer from a whole one. **What breaks if the promise is
false**: a read answered early may reflect a write that the secondary applies in another order
(a write to another resource that in fact changes this one, or an answer that changed by
itself); the comparison then finds a ``prerelease_mismatch`` and forces a checkpoint, which is
harmless while the primary lives; if the primary dies inside that window (before the
secondary's copy was compared), the client keeps bytes the promoted secondary did not send:
it may see an answer the secondary's state never held and, if the two answers differ in
length, a corrupted stream on that connection. Acknowledged writes are never lost either way
(write answers are never pre-released).

Enforced by the core for every rule, not left to them (:mod:`~colopp.compare.tcp`):

* **The absolute rule**: an early segment never acknowledges client bytes the secondary has
  not acknowledged on that connection (its ACK number never exceeds the secondary's highest).
  The gain is that a reply leaves once the secondary has *received* the request, not once it
  has *answered* it. It also orders the request: the secondary holds it before any write a
  client sends after the answer left, so after a failover it answers it from the same state.
  **ACK lowering** (``PreReleaseConfig.lower_acks``, ``--prerelease-ack-lowering``, **off by
  default**; :mod:`~colopp.compare.ack_lower`): a granted payload segment whose ACK is beyond
  the secondary's leaves with its ACK field lowered to what the secondary acknowledged, and
  bare ACKs raise it as the secondary's ACK rises. Every ACK the client sees still obeys the
  rule; what is lost is the ordering: the secondary may get the request only from the
  client's retransmission after a failover, behind writes other clients sent meanwhile, and
  then answer it from a newer state, with bytes (and possibly a length) other than the early
  ones, which corrupts that connection's stream. See that module for when it may be used.
* Never a SYN or RST; payload leaves in stream order (data behind a refused segment waits);
  nothing leaves early on a diverged connection or while a checkpoint is pending.
* **Lag budget** (``PreReleaseConfig.lag_budget_ms``, off unless given): nothing
  leaves early while the oldest unmatched primary frame is older than the budget. Without it,
  early answers let a closed-loop client drive the primary faster than the secondary can
  follow: the secondary's backlog grows until a checkpoint, and every answer that must wait
  for its copy (a write's) waits for that backlog (measured: 0.1-0.5 s holds, p99 ~230 ms).
  The budget is backpressure: clients then wait for the secondary, as without pre-release,
  until it is back within the budget. Not a safety rule; 0 or None turns it off. Off by
  default: on the bench lab its effect on the tail was not shown (README).
* Early output is still compared when the secondary's copy arrives. A mismatch forces a
  checkpoint at once (reason ``prerelease_mismatch``, counted in ``prerelease_mismatches``):
  the checkpoint makes the secondary a copy of the primary, which did send those bytes.

When it is not safe (what the operator must not configure as a read): paths whose answer
depends on the clock (``Date`` headers count, unless the secondary's clock makes them equal),
randomness, per-process counters or anything that differs between the two guests; GETs with
side effects (counters, sessions, caches that change answers). Those cause pre-release
mismatches and, in the window before the comparison, a failover could expose a client to an
answer the secondary would not have given. Leave ``http_read`` off unless the paths are pure.

What the shell must provide for ``http_read`` and ``resp_read``: client->guest frames (the primary's
filter-mirror stream) via :meth:`~colopp.compare.core.Comparator.feed_client`, each fed before
any primary output the guest produced after receiving it (drain the client stream first), so a
write is never seen later than a response that could reflect it. Without that feed the rule
never grants anything.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from colopp.compare.config import PreReleaseConfig
from colopp.compare.held import HeldFrame
from colopp.compare.http_reads import ReadClassifier
from colopp.compare.packet import ACK, FIN, RST, SYN, FlowKey, Packet

_CONTROL = SYN | FIN | RST


class PreReleaseRule(Protocol):
    """One reason a held TCP frame may leave early. The core already checked the absolute
    rule (the frame's ACK is covered by the secondary) before asking."""

    name: str

    def allows(self, frame: HeldFrame, now: float) -> bool:
        """True when ``frame`` derives only from already-synchronized state."""
        ...


class RetransmissionRule:
    """Payload the comparison already matched (``compared`` before it was due)."""

    name = "retransmission"

    def allows(self, frame: HeldFrame, now: float) -> bool:
        """A compared, non-empty segment without SYN/FIN/RST."""
        return (
            frame.compared
            and frame.payload_end > frame.payload_start
            and not frame.flags & _CONTROL
        )


class AckOnlyRule:
    """A bare acknowledgement: no guest data at all."""

    name = "ack_only"

    def allows(self, frame: HeldFrame, now: float) -> bool:
        """No payload, ACK set, no SYN/FIN/RST."""
        return (
            frame.payload_end == frame.payload_start
            and bool(frame.flags & ACK)
            and not frame.flags & _CONTROL
        )


class HttpReadRule:
    """A response whose ACK ends a run of complete read requests, no write since the last
    checkpoint."""

    def __init__(self, classifier: ReadClassifier, name: str = "http_read") -> None:
        self.classifier = classifier
        self.name = name

    def allows(self, frame: HeldFrame, now: float) -> bool:
        """ACK set, no SYN/RST, and the classifier covers the ACK on this connection."""
        return (
            bool(frame.flags & ACK)
            and not frame.flags & (SYN | RST)
            and self.classifier.covers(frame.key, frame.ack)
        )


class PreReleasePolicy:
    """A :class:`~colopp.compare.held.ReleasePolicy` made of rules; the first that allows a
    frame grants it. Also takes the client's frames (for the read classifier) and checkpoint
    boundaries, as :class:`~colopp.compare.held.ClientAwarePolicy`."""

    def __init__(
        self,
        rules: Sequence[PreReleaseRule],
        classifier: ReadClassifier | None = None,
        rearm_s: float | None = None,
        lower_acks: bool = False,
        lag_budget_s: float | None = None,
    ) -> None:
        self.rules = tuple(rules)
        # Read by the core (early.py): payload may leave with its ACK lowered (ack_lower.py).
        self.lower_acks = lower_acks
        # Read by the core: nothing leaves early while the secondary lags more than this.
        self.lag_budget_s = lag_budget_s
        self.classifier = classifier
        self.granted: Counter[str] = Counter()
        self.rearm_s = rearm_s
        self.disarmed_at: float | None = None  # when a write disarmed the read rule

    def may_pre_release(self, frame: HeldFrame, now: float) -> bool:
        """True when one rule allows ``frame`` to leave now."""
        for rule in self.rules:
            if rule.allows(frame, now):
                self.granted[rule.name] += 1
                return True
        return False

    def observe_client(
        self, pkt: Packet, frame: bytes, now: float, vnet_hdr_len: int = 0
    ) -> FlowKey | None:
        """A client->guest frame; returns the guest-side connection whose reads grew."""
        classifier = self.classifier
        if classifier is None:
            return None
        key = classifier.observe(pkt, frame, vnet_hdr_len)
        if self.disarmed_at is None and classifier.write_seen and not classifier.blind:
            self.disarmed_at = now
        return key

    def view_idle(self) -> bool:
        """True when no client frame can let anything leave early before the next
        checkpoint: no read rule, the copy is lost, or a write of unknown reach disarmed
        every read (an upload that is no service's requests does)."""
        classifier = self.classifier
        return classifier is None or classifier.blind or classifier.scope.global_write

    def lost_writes(self, key: FlowKey, count: int, now: float) -> bool:
        """:meth:`observe_client` for ``count`` payload segments (no SYN, no RST) of
        connection ``key`` (guest -> client) when its stream is lost: True when taken so
        (as writes), False: nothing done."""
        classifier = self.classifier
        if classifier is None:
            return True  # observe_client ignores every frame
        if not classifier.lost_write(key, count):
            return False
        if self.disarmed_at is None and classifier.write_seen and not classifier.blind:
            self.disarmed_at = now
        return True

    def client_lost(self) -> None:
        """The copy of the client's frames stopped: no read is pre-released any more, not
        even one whose request was seen before (a write may now reach the guest unseen)."""
        if self.classifier is not None:
            self.classifier.lose_client()
        self.disarmed_at = None  # a checkpoint would not re-arm anything

    def on_checkpoint(self) -> None:
        """The secondary is a copy of the primary again: re-arm the read rule."""
        self.disarmed_at = None
        if self.classifier is not None:
            self.classifier.on_checkpoint()

    def rearm_due(self, now: float) -> bool:
        """With a re-arm delay: a write disarmed the read rule at least that long ago."""
        return (
            self.rearm_s is not None
            and self.disarmed_at is not None
            and now - self.disarmed_at >= self.rearm_s
        )

    def snapshot(self) -> dict[str, Any]:
        """Grants per rule and the classifier's state, JSON-serialisable."""
        snap: dict[str, Any] = {
            "rules": [r.name for r in self.rules],
            "granted": dict(self.granted),
            "lower_acks": self.lower_acks,
            "lag_budget_s": self.lag_budget_s,
        }
        classifier = self.classifier
        if classifier is not None:
            snap["write_seen"] = classifier.write_seen
            snap["read_requests"] = classifier.read_requests
            snap["write_requests"] = classifier.write_requests
            snap["bad_checksum_frames"] = classifier.bad_checksum_frames
            snap["scope"] = "key" if classifier.scope.by_key else "global"
            snap["client_lost"] = classifier.blind
        return snap


def build_policy(config: PreReleaseConfig) -> PreReleasePolicy | None:
    """The policy ``config`` enables, or None (stock COLO: the core keeps its fast paths)."""
    if not config.enabled:
        return None
    rules: list[PreReleaseRule] = []
    classifier = None
    if "retransmission" in config.rules:
        rules.append(RetransmissionRule())
    if "ack_only" in config.rules:
        rules.append(AckOnlyRule())
    http, resp = "http_read" in config.rules, "resp_read" in config.rules
    if http or resp:
        classifier = ReadClassifier(
            config.read_methods,
            config.read_prefixes,
            scope=config.scope,
            resp_ports=config.resp_ports if resp else (),
            http=http,
        )
        rules.append(HttpReadRule(classifier, "http_read" if http else "resp_read"))
    rearm = config.rearm_ms / 1000.0 if config.rearm_ms is not None else None
    budget = config.lag_budget_ms / 1000.0 if config.lag_budget_ms else None
    return PreReleasePolicy(rules, classifier, rearm, config.lower_acks, budget)
