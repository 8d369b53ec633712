"""Young connections' offsets on the secondary host, tagged with checkpoint epochs.

While QEMU's ``filter-rewriter`` translates the secondary's young connections (those opened
since the last checkpoint), colopp cannot read its table. So the comparator, which sees both
guests' SYN-ACKs, learns each young offset (:class:`~colopp.compare.young_learn.IsnLearner`) and
sends it here tagged with its *epoch*: the number of checkpoints the primary had begun
(STOP) when the comparator read the frames it learned it from (whatever a guest sends after
a STOP is the next epoch's; ``colopp.compare.young_tap``). The secondary's agent counts the
checkpoints its QEMU has *loaded* (``loaded``). ``filter-rewriter`` zeroes its offsets at every
loaded checkpoint (``COLO_EVENT_CHECKPOINT``), so an entry is still live in it exactly when
``epoch >= loaded``.

At failover the promoted guest's table of record -- what the next secondary and every later
failover must apply -- is the table it inherited plus the live young entries
(:meth:`YoungOffsets.table_of_record`).

The comparator's "completed" message can come too late: the primary dies after this
secondary loaded a checkpoint (its ``filter-rewriter`` zeroed every offset) but before the
primary resumed, or before the message crossed the network. Offsets kept then are stale:
the promoted guest already runs those connections in the client's sequence space, and the
next side would translate them wrongly. So each entry also carries when it *arrived* (the
agent's wall clock) and promotion drops every entry that arrived before this secondary's
own last checkpoint load (QEMU's RESUME timestamp, same host and clock). That never drops
a live entry: the load that began an entry's epoch resumed the secondary before the
secondary told the primary, so before the primary resumed, the connection opened and the
offset was sent.
"""

from __future__ import annotations

from colopp.rewrite.table import MASK, ConnKey, OffsetTable

# An entry: (delta, epoch, arrival time, adopted). ``adopted`` is False until the comparator
# proved that the client took the primary's SYN-ACK (colopp.compare.young_tap, "Adoption"):
# an offset whose SYN-ACK died with the primary is not the promoted guest's translation.
# ``isn``: the client-visible (primary's) ISN, for an offset that was not proven adopted at
# promotion: the record then carries it *pending* and the next translator decides from the
# client's first acknowledgement (colopp.rewrite.segment).
_Entry = tuple[int, int, float, bool, int | None]


class YoungOffsets:
    """Young offsets learned by the comparator, and the checkpoints this secondary loaded."""

    __slots__ = ("_entries", "loaded", "run")

    def __init__(self) -> None:
        self._entries: dict[ConnKey, _Entry] = {}
        self.loaded = 0
        self.run: str | None = None

    def start_run(self, run: str) -> None:
        """A (re)started comparator: its epochs count from 0; older entries are dropped."""
        self.run = run
        self._entries.clear()
        self.loaded = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        """Has this host ``key``'s offset (adopted or not)? What the release gate needs."""
        return key in self._entries

    def learned(
        self,
        key: ConnKey,
        delta: int,
        epoch: int,
        arrived: float = 0.0,
        *,
        awaits_adoption: bool = False,
        isn: int | None = None,
    ) -> None:
        """The comparator learned ``key``'s offset after ``epoch`` begun checkpoints;
        ``arrived``: when it reached this host (wall clock, the clock of QEMU's events).
        ``awaits_adoption``: the comparator will say when the client took the primary's
        ISN (:meth:`adopted`); until then the offset is not part of the record."""
        if delta & MASK:
            self._entries[key] = (delta & MASK, epoch, arrived, not awaits_adoption, isn)

    def adopted(self, key: ConnKey, epoch: int) -> None:
        """The client of ``key`` took the primary's ISN (the offset of ``epoch`` holds)."""
        entry = self._entries.get(key)
        if entry is not None and entry[1] == epoch:
            self._entries[key] = (entry[0], entry[1], entry[2], True, entry[4])

    def checkpoint_loaded(self) -> None:
        """This secondary's QEMU loaded one more checkpoint (filter-rewriter reset)."""
        self.loaded += 1
        self.prune(self.loaded)

    def completed(self, count: int) -> None:
        """The primary saw ``count`` checkpoints complete since COLO started. It resumes only
        after the secondary loaded each one, so this secondary loaded at least as many
        (its own events may not have been read yet)."""
        self.loaded = max(self.loaded, count)
        self.prune(self.loaded)

    def loaded_at(self, stamp: float) -> None:
        """This secondary loaded a checkpoint and resumed at ``stamp`` (QEMU's RESUME time):
        entries that arrived by then are void. With QEMU's ``colo-compare`` there is no
        comparator to count epochs; offsets learned on this host
        (:mod:`colopp.rewrite.rewriter_learn`) are dated by the same clock instead."""
        self._entries = {k: v for k, v in self._entries.items() if v[2] > stamp}

    def prune(self, completed: int) -> None:
        """Forget entries older than checkpoint ``completed`` (no longer live anywhere)."""
        self._entries = {k: v for k, v in self._entries.items() if v[1] >= completed}

    def live(self, last_load: float | None = None) -> dict[ConnKey, int]:
        """The entries ``filter-rewriter`` still translates with. ``last_load``: when this
        secondary last loaded a checkpoint (QEMU's RESUME timestamp), if it did: an entry
        that arrived before it is stale even if no "completed" message said so. Entries
        not proven adopted are left out (their client may have taken this guest's ISN)."""
        return {
            k: delta
            for k, (delta, epoch, arrived, adopted, _) in self._entries.items()
            if adopted and epoch >= self.loaded and (last_load is None or arrived > last_load)
        }

    def pending(self, last_load: float | None = None) -> dict[ConnKey, tuple[int, int]]:
        """Live entries not proven adopted whose client-visible ISN is known: key ->
        (delta, isn). Whether the client took the primary's ISN (delta applies) or the
        promoted guest's (no translation) is decided later, from the client's next ACK."""
        return {
            k: (delta, isn)
            for k, (delta, epoch, arrived, adopted, isn) in self._entries.items()
            if not adopted
            and isn is not None
            and epoch >= self.loaded
            and (last_load is None or arrived > last_load)
        }

    def census(self, last_load: float | None = None) -> dict[str, int]:
        """How promotion with ``last_load`` sorts the entries: ``carried`` (live, adopted),
        ``pending`` (live, adoption unproven: carried with the client's ISN), dropped
        because a checkpoint the primary completed voided them (``dropped_epoch``), because
        they arrived before this secondary's own last load (``dropped_load``), or because
        adoption is unproven and no ISN came with them (``dropped_unadopted``)."""
        carried = dropped_epoch = dropped_load = unadopted = pending = 0
        for _, epoch, arrived, adopted, isn in self._entries.values():
            if epoch < self.loaded:
                dropped_epoch += 1
            elif last_load is not None and arrived <= last_load:
                dropped_load += 1
            elif not adopted and isn is not None:
                pending += 1  # carried, decided by the client's next ACK
            elif not adopted:
                unadopted += 1
            else:
                carried += 1
        return {
            "young": len(self._entries),
            "carried": carried,
            "dropped_epoch": dropped_epoch,
            "dropped_load": dropped_load,
            "pending": pending,
            "dropped_unadopted": unadopted,
        }

    def table_of_record(
        self, inherited: OffsetTable, now: float, last_load: float | None = None
    ) -> OffsetTable:
        """The promoted guest's full translation: ``inherited`` plus the live young entries
        (``last_load`` as for :meth:`live`)."""
        table = inherited.copy()
        for key, delta in self.live(last_load).items():
            # A young connection is new: an inherited entry on its 4-tuple is a dead one.
            table.set_delta(key, delta, now)
        for key, (delta, isn) in self.pending(last_load).items():
            table.set_pending(key, delta, isn, now)
        return table
