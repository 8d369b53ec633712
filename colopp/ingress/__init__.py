"""The secondary host's hold on the client's input (issue #22): what it received from the
primary's mirror, what it may promise the comparator it holds
(:mod:`~colopp.compare.receipts`), and what it must hand to the promoted guest at failover.

:mod:`~colopp.ingress.log` is the pure log. The relay process that would carry it (between
the primary's mirror and the secondary QEMU, and on the secondary's output to the
comparator) is designed in ``docs/architecture.md`` and not built yet.
"""
