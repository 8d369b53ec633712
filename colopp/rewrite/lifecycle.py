"""Which table each side of a pair translates with, through checkpoints and failovers.

Invariant: each guest's table maps *its* sequence space to the one the clients see. The
primary's table holds the connections it inherited from earlier failovers; the secondary's
holds those plus the young connections learned since the last checkpoint. So:

- learned offset (young connection): goes into the secondary's table only, and reaches the
  secondary host *before* the primary releases anything of that connection;
- checkpoint: the secondary's RAM becomes a copy of the primary's, so its table becomes a
  copy of the primary's (QEMU's ``filter-rewriter`` resets offsets to 0 instead, which is
  right only while the primary translates nothing);
- failover: the survivor keeps the table of the guest it runs (the promoted secondary keeps
  its own), and translates with it as the serving side from then on, forever;
- re-protection (a RAM migration) and switchover (failover + re-protection): the new
  secondary gets a copy of the serving side's table.

This module is the pure model of those rules; the agents carry the tables over the wire
(:meth:`~colopp.rewrite.table.OffsetTable.snapshot`).
"""

from __future__ import annotations

import enum

from colopp.compare.young_learn import Learned
from colopp.errors import StateError
from colopp.rewrite.table import OffsetTable


class Side(enum.Enum):
    PRIMARY = "primary"
    SECONDARY = "secondary"


class PairTables:
    """The primary's and (while protected) the secondary's :class:`OffsetTable`."""

    __slots__ = ("primary", "secondary")

    def __init__(self, primary: OffsetTable | None = None) -> None:
        self.primary = primary if primary is not None else OffsetTable()
        self.secondary: OffsetTable | None = self.primary.copy()

    def learned(self, learned: Learned, now: float) -> None:
        """A young connection's offset, for the secondary.

        Raises:
            StateError: the pair has no secondary (not protected).
        """
        self._require_secondary().set_delta(learned.key, learned.delta, now)

    def checkpoint(self) -> None:
        """The secondary became a copy of the primary.

        Raises:
            StateError: the pair has no secondary.
        """
        self._require_secondary()
        self.secondary = self.primary.copy()

    def failover(self, survivor: Side) -> None:
        """Only ``survivor`` serves now, with its own guest and its own table.

        Raises:
            StateError: the secondary survives but there is none.
        """
        if survivor is Side.SECONDARY:
            self.primary = self._require_secondary()
        self.secondary = None

    def reprotect(self) -> None:
        """A new secondary got a copy of the primary's RAM: it gets a copy of its table too."""
        self.secondary = self.primary.copy()

    def switchover(self) -> None:
        """The secondary takes the service and the old primary's host becomes the secondary."""
        self.failover(Side.SECONDARY)
        self.reprotect()

    def _require_secondary(self) -> OffsetTable:
        if self.secondary is None:
            raise StateError("the pair has no secondary: it is not protected")
        return self.secondary
