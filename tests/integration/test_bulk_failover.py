"""iperf3 through a failover (issue #22), both directions, both comparators (colopp's with
and without NIC offloads).

QEMU COLO's own maintainers test exactly this: a bulk TCP transfer keeps running while the
primary dies. Here the primary QEMU is SIGKILLed in the middle of an iperf3 run (upload,
then after re-protection download, ``-R``); the supervisor fails over to the secondary.
The transfer must go on over the same connection (iperf3 reports no error and one stream),
and the fault may stop it for at most :data:`MAX_STALL_S` (0.2 s reporting intervals).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest_pairs import Driven, driven_pair

from colopp.colo.state import PairState
from colopp.lab import Node, netns_argv
from colopp.qemu.argv import ComparatorKind

#: Two pairs, two failovers and a re-protection each: several minutes, so not in CI.
pytestmark = pytest.mark.slow

MAX_STALL_S = 1.0
INTERVAL_S = 0.2
RUN_S = 14
_INTERVAL_RE = re.compile(
    r"^\[\s*(?P<id>\d+)\]\s+(?P<start>[0-9.]+)-(?P<end>[0-9.]+)\s+sec\s+"
    r"(?P<bytes>[0-9.]+)\s+(?P<unit>[KMG]?)Bytes"
)


@dataclass
class Iperf:
    """An iperf3 client in the lab's client namespace, its interval lines collected."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    intervals: list[tuple[float, float, float]] = field(default_factory=list)
    progress: threading.Event = field(default_factory=threading.Event)
    reader: threading.Thread | None = None

    def read(self, started_after: int) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            m = _INTERVAL_RE.match(line)
            if m is None or "receiver" in line or "sender" in line:
                continue
            scale = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}[m["unit"]]
            self.intervals.append((float(m["start"]), float(m["end"]), float(m["bytes"]) * scale))
            if len(self.intervals) >= started_after:
                self.progress.set()

    def longest_stall(self) -> float:
        """The longest run of consecutive intervals that moved no byte, in seconds."""
        longest = run = 0.0
        for start, end, moved in self.intervals:
            run = run + (end - start) if moved == 0 else 0.0
            longest = max(longest, run)
        return longest

    def stall_after(self, t: float) -> float:
        """The run of intervals without progress that the fault at ``t`` (iperf3's clock)
        caused: the first one starting within a second of ``t`` (an uploading client keeps
        filling its socket buffer for a while), in seconds."""
        run = 0.0
        for start, end, moved in self.intervals:
            if end <= t:
                continue
            if moved:
                if run:
                    return run
                continue
            if not run and start > t + 1.0:
                return 0.0
            run += end - start
        return run


def start_iperf(site: Driven, reverse: bool) -> Iperf:
    argv = ["iperf3", "-c", str(site.sp.plan.guest_address.ip), "-t", str(RUN_S)]
    argv += ["-i", str(INTERVAL_S), "--forceflush", "-f", "k", "--connect-timeout", "5000"]
    if reverse:
        argv.append("-R")
    proc = subprocess.Popen(
        netns_argv(site.sp.plan.netns(Node.CLIENT), argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run = Iperf(proc)
    # Two seconds of transfer before the fault.
    run.reader = threading.Thread(target=run.read, args=(int(2 / INTERVAL_S),), daemon=True)
    run.reader.start()
    return run


#: colopp's comparator also with the NIC offloads bench.bulk measures with (``--rx-offload
#: --tx-offload``): GSO super-frames both ways, checksums left to the device, and colopp's
#: own translator rewriting them after the failover. (colo-compare with offloads: README
#: "Bulk traffic", NIC offloads.)
SITES = {
    "colopp": (ComparatorKind.COLOPP, {}),
    "colopp-offload": (ComparatorKind.COLOPP, {"rx_offload": True, "tx_offload": True}),
    "builtin": (ComparatorKind.BUILTIN, {}),
    # Pre-release with a semi-active secondary: host B's relay holds the client's bytes
    # (receipts, and segments past the secondary guest's window, ingress/pacing.py) and
    # hands them to the promoted guest.
    "colopp-prerelease": (
        ComparatorKind.COLOPP,
        {"prerelease": "auto", "read_prefixes": ("/kv/",), "semiactive": True},
    ),
}


@pytest.fixture(scope="module", params=list(SITES))
def site(
    request: pytest.FixtureRequest, qemu_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Driven]:
    kind, options = SITES[request.param]
    yield from driven_pair(
        tmp_path_factory.mktemp(f"bulk-{request.param}"),
        qemu_root,
        "clpblk",
        comparator=kind,
        **options,
    )


def test_an_upload_in_colo_never_stands_still(site: Driven, request: pytest.FixtureRequest) -> None:
    """Before the failover test (same pair): no stall of an upload while both sides run.

    Seen before ``ack_wait`` (colopp's comparator): 2-3 s without progress, every guest ACK
    held for the secondary's until a periodic checkpoint (docs/architecture.md, "Held
    ACKs"). colo-compare releases bare ACKs without that check: only reported.
    """
    sp = site.sp
    site.run(sp.next_checkpoint())
    run = start_iperf(site, reverse=False)
    try:
        code = site.run(asyncio.to_thread(run.proc.wait, RUN_S + 60))
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()
    assert run.reader is not None
    run.reader.join(10)
    if run.proc.stdout is not None:
        run.proc.stdout.close()
    what = "\n".join(run.lines)
    assert code == 0, what
    status = site.run(sp.pair.agents[sp.pair.primary.name].call("status"))
    counters = (status.get("comparator") or {}).get("counters") or {}
    name = request.node.callspec.params["site"]
    print(f"{name}: longest stall {run.longest_stall():.1f} s, {counters.get('divergences')}")
    if SITES[name][0] is ComparatorKind.COLOPP:
        assert run.longest_stall() <= MAX_STALL_S, what


def test_iperf3_keeps_its_connection_through_failover_both_directions(
    site: Driven, request: pytest.FixtureRequest
) -> None:
    sp = site.sp
    kind = SITES[request.node.callspec.params["site"]][0]
    sp.supervise(site.loop)
    site.run(sp.heartbeats())
    for cycle, reverse in enumerate((False, True), start=1):
        if cycle > 1:  # the supervisor re-protects onto the old primary's host
            site.run(sp.wait_for("re-protect", lambda: sp.pair.state is PairState.PROTECTED, 240))
            site.run(sp.next_checkpoint())
        run = start_iperf(site, reverse)
        try:
            # Waits in a thread: the supervisor's loop keeps heartbeating (1 s leases).
            assert site.run(asyncio.to_thread(run.progress.wait, 30)), run.lines[-10:]
            # The connections live across a checkpoint before the fault (README: limits).
            site.run(sp.next_checkpoint())
            primary = sp.pair.primary
            pid = site.run(sp.pair.agents[primary.name].call("status"))["pid"]
            os.kill(pid, signal.SIGKILL)
            killed_wall = time.time()
            killed_at = run.intervals[-1][1]  # the fault, on iperf3's clock (within 0.2 s)
            site.run(sp.wait_for(f"failover {cycle}", lambda c=cycle: sp.handled(c), 60))
            code = site.run(asyncio.to_thread(run.proc.wait, RUN_S + 60))
        finally:
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()
        assert run.reader is not None
        run.reader.join(10)
        if run.proc.stdout is not None:
            run.proc.stdout.close()
        what = f"{'download' if reverse else 'upload'} cycle {cycle}: " + "\n".join(run.lines)
        incident = sp.incidents[cycle - 1]
        print(
            f"{what.split(':')[0]}: stall after the fault {run.stall_after(killed_at):.1f} s,"
            f" detected {incident.detected_at - killed_wall:.2f} s after the kill,"
            f" failover {incident.failover_ms or 0:.0f} ms,"
            f" guest running {incident.guest_running_ms} ms after the promotion began"
        )
        print("  promotion:", ", ".join(f"{name} {ms:.0f}" for name, ms in incident.timeline_ms))
        serving = site.run(sp.pair.agents[sp.pair.primary.name].call("status"))
        relay = (serving.get("ingress") or {}).get("counters") or {}
        keep = {k: v for k, v in relay.items() if str(k).startswith("keep_")}
        if relay:  # host B's relay: what it handed the guest, and the client (keep.py)
            print("  relay:", relay.get("replay"), keep)
        assert incident.error is None, incident
        assert code == 0, what
        assert not any("error" in line for line in run.lines), what
        assert run.intervals and run.intervals[-1][1] >= RUN_S - 1, what
        # Around the fault only: stalls while both sides run (the held ACKs of an upload,
        # README "Bulk traffic") and during re-protection are not the failover's.
        assert run.stall_after(killed_at) <= MAX_STALL_S, (killed_at, what)
        if reverse and kind is ComparatorKind.COLOPP:
            # What the dead comparator held: kept on host B, taken at the promotion.
            assert keep.get("keep_taken", 0) > 0, relay
        streams = {line.split("]")[0] for line in run.lines if _INTERVAL_RE.match(line)}
        assert len(streams) == 1, what  # one data connection from start to end
