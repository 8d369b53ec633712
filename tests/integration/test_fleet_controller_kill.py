"""issue 21's controller kill on the three-host lab, through the API in fleet mode: two API
replicas on a 3-member etcd protect two kvd guests over the pool (a client workload on
each); every link of the host that is primary for one and secondary for the other is cut,
and the leading replica is SIGKILLed as soon as it reports the first affected protection
failing over. The other replica leads within 5 s and finishes the recovery: both
protections served again and re-protected onto the remaining hosts, no acknowledged write
lost, no request failed outside the documented failover window."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest

from bench.fleet_hosts import host_kill
from colopp.fleet.local import LocalFleet

# Minutes of QEMU on a three-host lab: out of CI's budget.
pytestmark = pytest.mark.slow


def test_the_follower_replica_takes_over_and_finishes_the_recovery(qemu_root: Path) -> None:
    if shutil.which("etcd") is None:
        pytest.skip("etcd-server is not installed (scripts/setup.sh installs it)")
    loop = asyncio.new_event_loop()
    # A short directory: QEMU's sockets live under it (UNIX socket paths < 108 bytes).
    with tempfile.TemporaryDirectory(prefix="f21ck") as tmp:
        state = Path(tmp)
        try:
            local = loop.run_until_complete(LocalFleet.start(state / "lab", qemu_root, "f21ckl", 2))
            try:
                out = host_kill(local, state, count=2, ttl=3)
            finally:
                loop.run_until_complete(local.close())
        finally:
            loop.close()
    kill, took = out["host_kill"], out["controller_kill"]
    print(kill["timelines_s"], kill["failures"], took)
    assert kill["failure"] is None, kill["states_after"]
    assert kill["protections_affected"] == 2
    assert kill["reprotected_elsewhere"] == 2
    assert took["takeover_s"] <= 5
    assert took["killed_after_cut_s"] < kill["recovered_s"]  # killed during the recovery
    assert kill["writes_lost"] == 0
    assert kill["requests_failed_outside_window"] == 0, kill["failures"]
