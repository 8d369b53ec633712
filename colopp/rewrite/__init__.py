"""colopp's own TCP sequence-number translation (in place of QEMU's ``filter-rewriter``).

- :mod:`~colopp.rewrite.table`: the per-connection offsets one translator applies.
- :mod:`~colopp.rewrite.segment`: rewriting one frame through a table (pure, never raises).
- :mod:`~colopp.compare.young_learn`: learning a young connection's offset from both guests' ISNs.
- :mod:`~colopp.rewrite.lifecycle`: which table each side uses across checkpoints,
  failovers, re-protections and switchovers.

See ``docs/rewrite.md`` for why and how this replaces ``filter-rewriter``.
"""
