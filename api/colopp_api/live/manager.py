"""All protections of this API process: create, find, re-attach after a restart, close."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from colopp.colo.state import PairLifecycle, PairState
from colopp.controller.pair import PairController
from colopp.controller.store import attach
from colopp.domain import HostSlot
from colopp.errors import ColoppError, ConfigError
from colopp.fleet.fleet import choose_elsewhere, pair_sides
from colopp.fleet.placement import Sides
from colopp.fleet.routed import ProtectionAgent
from colopp_api.config import Settings
from colopp_api.db.store import Store
from colopp_api.db.writer import SampleWriter
from colopp_api.live import pool
from colopp_api.live.runner import ProtectionRunner
from colopp_api.schemas import ProtectionCreate
from colopp_api.states import ApiState, reconcile
from colopp_api.webhooks.notifier import Notifier

log = logging.getLogger("colopp_api")


class Conflict(Exception):
    """A request that cannot apply now (HTTP 409); the message says why."""


class ProtectionManager:
    """Runners by protection id."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.runners: dict[str, ProtectionRunner] = {}
        self._create_lock = asyncio.Lock()
        # Samples are written (and pruned) on a thread of their own, off the event loop.
        self.writer = SampleWriter(store, settings.retention)
        self.writer.start()
        self.notifier = Notifier(store)
        #: False on a fleet replica that does not lead: it neither supervises nor creates.
        self.leading = True

    def _runner(self, row: dict[str, Any]) -> ProtectionRunner:
        runner = ProtectionRunner(row, self.store, self.settings, self.writer)
        runner.notify = self.notifier.observe
        if runner.placement == "pool":
            runner.elsewhere = self.elsewhere
        return runner

    # -- the pool ------------------------------------------------------------------------
    def placed(self) -> dict[str, Sides]:
        """Where every active pool protection runs (by its name on the agents)."""
        out: dict[str, Sides] = {}
        for runner in self.runners.values():
            if runner.placement != "pool" or runner.stopped or "protection" not in runner.runtime:
                continue
            name, pair = runner.runtime["protection"], runner.pair
            if pair is not None:
                out[name] = pair_sides(pair)
            else:
                primary, secondary = runner.runtime["sides"]
                out[name] = Sides(primary, secondary)
        return out

    async def elsewhere(self, pair: PairController, avoid: set[str]) -> HostSlot | None:
        """A pool host for ``pair``'s new secondary (its supervisor asks when the host it
        lost stays unreachable): placement over every pool protection, probed, reserved."""
        runner = next((r for r in self.runners.values() if r.pair is pair), None)
        if runner is None:
            return None
        agents = {n: a for n, a in pair.agents.items() if isinstance(a, ProtectionAgent)}
        return await choose_elsewhere(
            pool.members(self.settings),
            self.placed(),
            runner.runtime["protection"],
            pair,
            agents,
            avoid,
        )

    def _pool_runtime(self, protection_id: str) -> dict[str, Any]:
        """A new pool protection's slot and hosts (under the create lock).

        Raises:
            Conflict: no pool, no free slot, no two hosts with room.
        """
        slots = [
            int(r.runtime["slot"])
            for r in self.runners.values()
            if r.placement == "pool" and not r.stopped and "slot" in r.runtime
        ]
        try:
            slot, sides = pool.choose(self.settings, self.placed(), slots)
        except ConfigError as exc:
            raise Conflict(str(exc)) from exc
        name = pool.agent_name(protection_id)
        return {"protection": name, "slot": slot, "sides": [sides.primary, sides.secondary]}

    def _active(self, row: dict[str, Any]) -> bool:
        return not row["stopped"]

    async def create(self, spec: ProtectionCreate) -> dict[str, Any]:
        """Record a new protection and start protecting it in the background.

        Raises:
            Conflict: another active protection has this name, or a lab already exists.
        """
        if not self.leading:
            raise Conflict("this API replica does not lead; send changes to the leading one")
        async with self._create_lock:
            active = [r for r in self.store.protections() if self._active(r)]
            for row in active:
                if row["name"] == spec.name:
                    raise Conflict(f"protection {row['id']} already has the name {spec.name}")
            if spec.placement == "lab":
                if not self.settings.lab_enabled:
                    raise Conflict("lab placement is disabled on this server (COLOPP_API_LAB=0)")
                labs = [r for r in active if r["placement"] == "lab"]
                if labs:
                    raise Conflict(
                        f"only one lab per host: protection {labs[0]['id']} holds it (every lab"
                        " puts 198.18.2.1 in the root namespace); unprotect it with ?stop=true"
                    )
            protection_id = secrets.token_hex(6)
            runtime = self._pool_runtime(protection_id) if spec.placement == "pool" else {}
            row = self.store.add_protection(
                id=protection_id,
                name=spec.name,
                placement=spec.placement,
                options=spec.model_dump(mode="json"),
                state=ApiState.STARTING.value,
                reason=None,
                runtime=runtime,
            )
            runner = self._runner(row)
            self.runners[row["id"]] = runner
            runner.event("state", source=None, target="starting", reason="created")
            runner.start_protect()
            return row

    def runner(self, protection_id: str) -> ProtectionRunner | None:
        return self.runners.get(protection_id)

    async def reattach_all(self) -> None:
        """Re-attach every protection the database says is not stopped (after a restart,
        or a replica taking the lead), all at once: a dead host delays each by one timeout."""
        rows = [row for row in self.store.protections() if not row["stopped"]]
        for row in rows:
            self.runners[row["id"]] = self._runner(row)
        await asyncio.gather(*(self._reattach_one(self.runners[row["id"]], row) for row in rows))

    async def _reattach_one(self, runner: ProtectionRunner, row: dict[str, Any]) -> None:
        try:
            await self._reattach(runner, row)
        except Exception as exc:  # any failure: error, with a state event and a reason
            if isinstance(exc, ColoppError | OSError):
                log.warning("re-attach of %s failed: %s", row["id"], exc)
            else:
                log.exception("re-attach of %s failed", row["id"])
            runner.fail(f"re-attach failed: {exc}")

    async def _reattach(self, runner: ProtectionRunner, row: dict[str, Any]) -> None:
        record = row["record"]
        if record is None:
            # The state event goes from the recorded state (starting) to error.
            await runner.unprotect_after_crash("the API restarted before the pair was launched")
            return
        pair, agents = attach(record, name_suffix="")
        runner.attach(pair, agents, record)
        status = await pair.verify()
        sides = status["sides"]
        other = pair.secondary or pair.standby
        modes = (
            sides.get(pair.primary.name, {}).get("colo", {}).get("mode"),
            sides.get(other.name, {}).get("colo", {}).get("mode") if other else None,
        )
        survivor = sides.get(pair.secondary.name, {}) if pair.secondary else {}
        # A leader killed while a lost *secondary* was being failed over: the primary
        # reports failed_over (it continues alone), the secondary's host may not answer.
        primary_alone = pair.secondary is not None and bool(
            sides.get(pair.primary.name, {}).get("failed_over")
        )
        truth, why = reconcile(
            pair.state,
            modes,
            bool(survivor.get("failed_over")),
            pair.standby is not None,
            primary_alone=primary_alone,
        )
        if truth is PairState.PROTECTED and pair.standby is not None:
            pair.secondary, pair.standby = pair.standby, None
        if truth is PairState.FAILED_OVER and pair.secondary is not None and pair.standby is None:
            if primary_alone:
                pair.secondary, pair.standby = None, pair.secondary
            else:
                pair.primary, pair.secondary, pair.standby = pair.secondary, None, pair.primary
        pair.lifecycle = PairLifecycle(state=truth, on_change=runner._on_transition)
        recorded = ApiState(row["state"])
        if recorded in (ApiState.UNPROTECTING,) or truth is PairState.ERROR:
            runner.phase = None
            runner.event("reattached", state=truth.value, reason=why)
            await runner.unprotect_after_crash(why if truth is PairState.ERROR else None)
            return
        runner.phase = ApiState.UNPROTECTED if recorded is ApiState.UNPROTECTED else None
        runner.reason = row["reason"] if runner.phase else None
        runner.event(
            "reattached", state=runner.state.value, reason=why, consistent=status["consistent"]
        )
        runner.persist()
        runner.resume()

    async def detach_all(self) -> None:
        """Stop watching every pair (the pairs keep running): shutdown, or leadership lost."""
        runners, self.runners = self.runners, {}
        for runner in runners.values():
            await runner.shutdown()

    async def close(self) -> None:
        """API shutdown: stop watching every pair; the pairs keep running."""
        await self.detach_all()
        await asyncio.to_thread(self.writer.close)
        await self.notifier.close()
