"""The keeper against a scripted etcd and a fake clock: renew, partition, fence, release."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from colopp.arbiter.election import LeaderElection
from colopp.arbiter.etcd import EtcdGateway
from colopp.arbiter.keeper import RightKeeper
from colopp.arbiter.right import FenceAction, RightState
from colopp.arbiter.timing import LeaseTiming
from colopp.clock import FakeClock
from colopp.errors import EtcdUnavailable, NotAcquired
from tests.unit.arbiter.scripted_etcd import ScriptedEtcd

T = LeaseTiming()


def keeper_on(etcd: ScriptedEtcd, clock: FakeClock, actions: list[str], who: str) -> RightKeeper:
    async def fence(action: FenceAction) -> None:
        actions.append(f"{who} {action.value} at {clock.monotonic():.2f}")

    return RightKeeper(etcd, "colopp/protection/web", who, T, clock, fence)


def test_a_side_cut_off_from_etcd_fences_before_its_lease_expires_there() -> None:
    async def scenario() -> None:
        clock = FakeClock(start=0.0)
        etcd = ScriptedEtcd(clock)
        actions: list[str] = []
        a = keeper_on(etcd, clock, actions, "hosta")
        assert await a.acquire() == 11
        for _ in range(200):  # 10 s, renewed all along
            await clock.sleep(T.check_period)
        assert a.right.state is RightState.HOLDING and a.may_release()
        lease_expiry_before_cut = etcd.leases[a.lease]
        etcd.cut = True
        await asyncio.wait_for(a.done.wait(), 5)
        assert [x.split(" at ")[0] for x in actions] == ["hosta stop-output", "hosta kill-qemu"]
        fenced_at = float(actions[-1].split(" at ")[1])
        assert fenced_at + T.fence_budget <= lease_expiry_before_cut
        assert a.right.state is RightState.FENCED and not a.may_release()
        # Once etcd expires the lease the other side takes the key with a larger token.
        etcd.cut = False
        clock.advance(T.ttl)
        b = keeper_on(etcd, clock, actions, "hostb")
        assert await b.acquire() > a.token
        await b.release()

    asyncio.run(scenario())


def test_the_key_of_a_live_holder_cannot_be_taken_and_the_loser_revokes_its_lease() -> None:
    async def scenario() -> None:
        clock = FakeClock(start=0.0)
        etcd = ScriptedEtcd(clock)
        actions: list[str] = []
        a = keeper_on(etcd, clock, actions, "hosta")
        await a.acquire()
        b = keeper_on(etcd, clock, actions, "hostb")
        with pytest.raises(NotAcquired, match="held by 'hosta' at revision 11"):
            await b.acquire()
        assert etcd.log[-1] == f"revoke {b.lease}"
        await a.release()
        assert [x.split(" at ")[0] for x in actions] == ["hosta stop-output"]
        assert etcd.log[-1] == f"revoke {a.lease}"
        assert not etcd.keys

    asyncio.run(scenario())


def test_a_renew_stuck_at_etcd_does_not_delay_the_fence() -> None:
    async def scenario() -> None:
        clock = FakeClock(start=0.0)
        etcd = ScriptedEtcd(clock)
        actions: list[str] = []
        a = keeper_on(etcd, clock, actions, "hosta")
        await a.acquire()
        etcd.hang = True  # the very first renew hangs forever
        await asyncio.wait_for(a.done.wait(), 5)
        assert float(actions[0].split(" at ")[1]) <= T.fence_after + T.check_period + 1e-9

    asyncio.run(scenario())


def test_election_leads_then_steps_down_when_cut_off() -> None:
    async def scenario() -> None:
        clock = FakeClock(start=0.0)
        etcd = ScriptedEtcd(clock)
        led: list[str] = []
        stopped = asyncio.Event()

        async def lead(token: int) -> None:
            led.append(f"lead {token}")
            try:
                await asyncio.Event().wait()
            finally:
                led.append(f"stop {token} at {clock.monotonic():.2f}")
                stopped.set()

        election = LeaderElection(etcd, "r1", lead, clock=clock)
        task = asyncio.create_task(election.run())
        await asyncio.wait_for(election.leading.wait(), 5)
        etcd.cut = True
        await asyncio.wait_for(stopped.wait(), 5)
        assert led[0] == "lead 11" and led[1].startswith("stop 11")
        assert float(led[1].split(" at ")[1]) <= T.fence_after + T.check_period + 0.01
        task.cancel()

    asyncio.run(scenario())


def test_gateway_tries_each_endpoint_and_maps_failures() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.host == "198.18.0.1":
            raise httpx.ConnectError("refused", request=request)
        body = json.loads(request.content)
        assert body == {"TTL": 3}
        return httpx.Response(200, json={"ID": "77", "TTL": "3"})

    async def scenario() -> None:
        gw = EtcdGateway(
            ["http://198.18.0.1:2379", "http://198.18.0.2:2379/"],
            transport=httpx.MockTransport(handler),
        )
        assert await gw.lease_grant(3) == (77, 3)
        await gw.aclose()
        bad = EtcdGateway(["http://198.18.0.1:2379"], transport=httpx.MockTransport(handler))
        with pytest.raises(EtcdUnavailable, match="lease/grant: http://198.18.0.1:2379: Connect"):
            await bad.lease_grant(3)
        await bad.aclose()

    asyncio.run(scenario())
    assert seen[:2] == [
        "http://198.18.0.1:2379/v3/lease/grant",
        "http://198.18.0.2:2379/v3/lease/grant",
    ]


@pytest.mark.parametrize("trouble", ["isolated_leader", "new_term_on_read", "key_deleted"])
def test_a_renew_without_a_quorum_read_at_the_same_term_does_not_count(trouble: str) -> None:
    """etcd 3.4 lets a leader cut off from its quorum renew leases until it steps down."""

    async def scenario() -> None:
        clock = FakeClock(start=0.0)
        etcd = ScriptedEtcd(clock)
        actions: list[str] = []
        a = keeper_on(etcd, clock, actions, "hosta")
        await a.acquire()
        if trouble == "key_deleted":
            etcd.keys.clear()
        else:
            setattr(etcd, trouble, 1)
        await asyncio.wait_for(a.done.wait(), 5)
        fenced_at = float(actions[0].split(" at ")[1])
        if trouble == "key_deleted":
            assert "key is gone" in a.right.reason
            assert fenced_at <= T.renew_interval + 2 * T.check_period + 1e-6
        else:
            assert fenced_at == pytest.approx(T.fence_after, abs=T.check_period + 1e-6)

    asyncio.run(scenario())
