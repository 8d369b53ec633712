"""The secondary host's hold on the client's input (issue #22): what it received from the
primary's mirror, what it may promise the comparator it holds
(:mod:`~colopp.compare.receipts`), and what it must hand to the promoted guest at failover.

:mod:`~colopp.ingress.log` is the pure log; :mod:`~colopp.ingress.relay` carries it on both
replication streams (the primary's mirror to the secondary QEMU, the secondary's output to
the comparator); :mod:`~colopp.ingress.replay` hands the log to the promoted guest;
``python -m colopp.ingress`` runs them; the agent starts it for a secondary whose answers
may leave early (the ACK gate, :mod:`~colopp.ingress.ackgate`, and receipts), see
:mod:`colopp.agent.comparing` and ``docs/architecture.md``, "Held ACKs, uploads, and early
ACKs from the secondary host's receipts".
"""
