"""colopp's userspace packet comparator, in place of QEMU's in-process colo-compare.

Data path: :mod:`~colopp.compare.framing` (QEMU's net-filter socket framing) ->
:mod:`~colopp.compare.packet` (Ethernet/IPv4/TCP/UDP/ICMP parsing; IPv6 in
:mod:`~colopp.compare.ipv6`) ->
:mod:`~colopp.compare.core` (the pure decision core, with :mod:`~colopp.compare.tcp`, its
segment check :mod:`~colopp.compare.tcp_check`, what its held head waits for
:mod:`~colopp.compare.tcp_waits`, its in-order fast paths :mod:`~colopp.compare.tcp_fast`,
:mod:`~colopp.compare.seq`, :mod:`~colopp.compare.stream` and :mod:`~colopp.compare.flows`;
release accounting in :mod:`~colopp.compare.release`, checkpoint requests in
:mod:`~colopp.compare.triggers`, flow upkeep in :mod:`~colopp.compare.sweep`; the COLO++
pre-release policy in :mod:`~colopp.compare.prerelease`, :mod:`~colopp.compare.early`,
:mod:`~colopp.compare.http_reads` and the secondary host's receipts,
:mod:`~colopp.compare.receipts`) -> actions (:mod:`~colopp.compare.verdict`) carried out by
the asyncio :mod:`~colopp.compare.shell` (sockets: :mod:`~colopp.compare.connect`,
:mod:`~colopp.compare.inputs`; checkpoints over QMP: :mod:`~colopp.compare.checkpoint`).
Young connections' sequence offsets (for :mod:`colopp.rewrite`) are learned from both guests'
SYN-ACKs by :mod:`~colopp.compare.young_tap` and :mod:`~colopp.compare.young_learn` and sent
to the secondary host by :mod:`~colopp.compare.young_send`.
"""

from colopp.compare.config import CompareConfig, PreReleaseConfig
from colopp.compare.core import Comparator
from colopp.compare.held import ClientAwarePolicy, HeldFrame, NeverPreRelease, ReleasePolicy
from colopp.compare.prerelease import PreReleasePolicy, build_policy
from colopp.compare.verdict import Action, Checkpoint, Drop, PreRelease, Release

__all__ = [
    "Action",
    "Checkpoint",
    "ClientAwarePolicy",
    "Comparator",
    "CompareConfig",
    "Drop",
    "HeldFrame",
    "NeverPreRelease",
    "PreRelease",
    "PreReleaseConfig",
    "PreReleasePolicy",
    "Release",
    "ReleasePolicy",
    "build_policy",
]
