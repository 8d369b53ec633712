"""One protection, live: protect in the background, supervise, sample, act on requests.

Every client action runs under the protection's :attr:`ProtectionRunner.lock`: two racing
calls (failover vs unprotect) are serialized, and each checks the state it finds. The
supervisor (automatic failover and re-protection) is paused around a client action, so a
planned fence is never mistaken for a dead primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from colopp.clock import SystemClock
from colopp.colo.state import PairState, Transition
from colopp.controller.agent_client import AgentClient
from colopp.controller.local import LocalDeployment
from colopp.controller.pair import PairController
from colopp.controller.seam import Agent, fence
from colopp.controller.store import pair_record
from colopp.controller.supervisor import Incident, PairSupervisor
from colopp.domain import HostSlot, Role
from colopp.errors import ColoppError
from colopp.fleet.routed import ProtectionAgent
from colopp_api.config import Settings
from colopp_api.db.store import Store
from colopp_api.db.writer import SampleWrite, SampleWriter
from colopp_api.live import placement, pool
from colopp_api.live.sampler import SamplerMemory, Tally, digest, read_cpu_seconds
from colopp_api.schemas import ProtectionCreate
from colopp_api.states import ApiState, from_pair

log = logging.getLogger("colopp_api")

Elsewhere = Callable[[PairController, set[str]], Awaitable[HostSlot | None]]


class ProtectionRunner:
    """The live half of one protection (the database row is the other half)."""

    def __init__(
        self,
        row: dict[str, Any],
        store: Store,
        settings: Settings,
        writer: SampleWriter | None = None,
    ) -> None:
        self.id: str = row["id"]
        self.placement: str = row["placement"]
        self.options: dict[str, Any] = row["options"]
        self.runtime: dict[str, Any] = dict(row["runtime"])
        self.stopped: bool = bool(row["stopped"])
        self.store = store
        self.settings = settings
        self.writer = writer  # None: samples are written here, on the event loop
        # Told of every event (the manager points it at the webhooks' notifier).
        self.notify: Callable[[str, str, dict[str, Any]], None] = lambda _p, _k, _d: None
        self.lock = asyncio.Lock()
        # The API's own phase (starting before a pair exists, unprotecting, ...); None
        # while the pair's state speaks for itself.
        self.phase: ApiState | None = ApiState(row["state"])
        self.reason: str | None = row["reason"]
        self.pair: PairController | None = None
        self.deployment: LocalDeployment | None = None
        self.addresses: dict[str, tuple[str, int]] = {}
        self.token = ""
        self.token_file = Path()
        self.incidents: list[Incident] = []
        self.supervisor: PairSupervisor | None = None
        self.tally = Tally()
        self.memory = SamplerMemory()
        self.pids: dict[str, int] = {}
        self._beat: dict[str, Agent] = {}
        self._probe: dict[str, Agent] = {}
        # A pool protection's way to a host for its new secondary (set by the manager).
        self.elsewhere: Elsewhere | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # -- state -------------------------------------------------------------------------
    @property
    def state(self) -> ApiState:
        if self.phase is not None or self.pair is None:
            return self.phase or ApiState.STARTING
        return from_pair(self.pair.state, reprotecting=self.pair.standby is not None)

    def persist(self) -> None:
        """Write the state, the pair record and the runtime facts to the database."""
        self._persist()

    def resume(self) -> None:
        """Supervise and sample a re-attached pair."""
        self._supervise()

    async def unprotect_after_crash(self, error: str | None) -> None:
        """Tear down what a crashed API left half-done (or was tearing down)."""
        if self.deployment is None and self.placement == "lab" and "prefix" in self.runtime:
            self.deployment = placement.lab_deployment(self.runtime, self.settings, "")
        await self._teardown(error)

    def _persist(self, **extra: Any) -> None:
        pair = self.pair
        fields: dict[str, Any] = {"state": self.state.value, "reason": self.reason}
        fields |= {"stopped": self.stopped, "runtime": self.runtime}
        if pair is not None:
            fields["record"] = pair_record(pair, self.addresses, self.token_file)
            fields["primary_host"] = pair.primary.name
            fields["secondary_host"] = pair.secondary.name if pair.secondary else None
        self.store.update_protection(self.id, **(fields | extra))

    def event(self, kind: str, **data: Any) -> None:
        self.store.add_events(self.id, [(time.time(), kind, data)])
        self.notify(self.id, kind, data)

    def fail(self, reason: str) -> None:
        """Enter ``error`` with ``reason``: persisted, with a state and an error event."""
        self._set_phase(ApiState.ERROR, reason)
        self.event("error", message=reason)

    def _set_phase(self, phase: ApiState | None, reason: str | None) -> None:
        previous = self.state
        self.phase, self.reason = phase, reason
        self._persist()
        if self.state is not previous:
            self.event("state", source=previous.value, target=self.state.value, reason=reason)

    def _on_transition(self, step: Transition) -> None:
        assert self.pair is not None
        self.reason = step.reason if step.target is PairState.ERROR else None
        self._persist()
        self.event(
            "state",
            source=step.source.value,
            target=self.state.value,
            pair_state=step.target.value,
            reason=step.reason,
        )

    def _progress(self, message: str) -> None:
        self.event("progress", message=message)

    def _spawn(self, name: str, work: Awaitable[None]) -> None:
        self._tasks[name] = asyncio.get_running_loop().create_task(work)  # type: ignore[arg-type]

    # -- protect -----------------------------------------------------------------------
    def start_protect(self) -> None:
        """Protect in the background (the POST has already answered 201)."""
        self._spawn("protect", self._protect())

    async def _protect(self) -> None:
        spec = ProtectionCreate.model_validate(self.options)
        try:
            if self.placement == "lab":
                state_dir = self.settings.state_dir / "p" / self.id  # QMP socket paths < 108 bytes
                self.runtime |= {"prefix": self.settings.lab_prefix, "state_dir": str(state_dir)}
                self.reason = "waiting for the host's lab (one lab per host at a time)"
                self._persist()
                made = await placement.lab_placement(spec, self.settings, state_dir, self._progress)
            elif self.placement == "pool":
                made = await pool.pool_placement(spec, self.settings, self.runtime)
            else:
                made = await placement.hosts_placement(spec, self.settings)
            self._adopt(made.agent_addresses(), made.token, made.token_file, made.deployment)
            self.runtime |= made.runtime
            self.pair = PairController(
                made.config, made.agents, progress=self._progress, on_change=self._on_transition
            )
            if self.placement == "pool":
                self.pair.rights = pool.pair_rights(self.settings, self.runtime)
            self.phase, self.reason = None, None
            self._persist()
            if spec.running_qmp is not None or spec.running_domain is not None:
                # a VM that runs already: no restart
                await self.pair.protect_running(spec.running_qmp, domain=spec.running_domain)
            else:
                await self.pair.protect()
        except ColoppError as exc:
            log.warning("protection %s failed: %s", self.id, exc)
            await self._teardown(f"protect failed: {exc}")
            return
        except Exception as exc:  # a bug must still end in error, with a reason and an event
            log.exception("protection %s failed unexpectedly", self.id)
            await self._teardown(f"protect failed: internal error: {exc!r}")
            return
        self._supervise()

    def _adopt(
        self,
        addresses: dict[str, tuple[str, int]],
        token: str,
        token_file: Path,
        deployment: LocalDeployment | None,
    ) -> None:
        self.token, self.token_file, self.deployment = token, token_file, deployment
        self.addresses = addresses
        self._beat = {n: self._client(f"{n}-hb", h, p) for n, (h, p) in addresses.items()}
        self._probe = {n: self._client(f"{n}-metrics", h, p) for n, (h, p) in addresses.items()}

    def _client(self, name: str, host: str, port: int) -> Agent:
        """A client of one host's agent; a pool protection's calls name the protection."""
        client = AgentClient(name, host, port, self.token)
        if self.placement != "pool":
            return client
        return ProtectionAgent(client, self.runtime["protection"], int(self.runtime["slot"]))

    def attach(
        self, pair: PairController, agents: dict[str, AgentClient], record: dict[str, Any]
    ) -> None:
        """Take over a re-attached pair (after an API restart)."""
        token_file = Path(record["token_file"])
        token = token_file.read_text().strip()
        deployment = None
        if self.placement == "lab":
            deployment = placement.lab_deployment(self.runtime, self.settings, token)
            deployment.agents = agents
        self._adopt({n: (a.host, a.port) for n, a in agents.items()}, token, token_file, deployment)
        if self.placement == "pool":  # every call names the protection
            name, slot = self.runtime["protection"], int(self.runtime["slot"])
            pair.agents = {n: ProtectionAgent(a, name, slot) for n, a in agents.items()}
            pair.rights = pool.pair_rights(self.settings, self.runtime)
        self.pair = pair
        pair.lifecycle.on_change = self._on_transition

    # -- supervision and sampling --------------------------------------------------------
    def _supervise(self) -> None:
        pair = self.pair
        assert pair is not None
        if pair.state in (PairState.PROTECTED, PairState.FAILED_OVER) and self.phase is None:
            self.supervisor = PairSupervisor(
                pair,
                self._beat,
                auto_reprotect=bool(self.options.get("auto_reprotect", True)),
                on_incident=self._on_incident,
                on_beat=lambda host, ok: self.tally.observe_agent(host, ok, time.time()),
                incidents=self.incidents,
                elsewhere=self.elsewhere,
            )
            self._spawn("supervise", self.supervisor.run())
        if "sample" not in self._tasks:
            self._spawn("sample", self._sample_loop())

    async def _unsupervise(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
            task = self._tasks.pop("supervise", None)
            if task is not None:
                await task
            self.supervisor = None

    def _on_incident(self, incident: Incident) -> None:
        kind = "switchover" if incident.health == "switchover" else "failover"
        if kind == "switchover":
            self.tally.switchovers += 1
        else:
            self.tally.failovers += 1
        self.event(kind, **vars(incident))

    async def _sample_loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.sample()
            except (ColoppError, OSError):
                pass  # an agent down is shown by the sample's own error fields
            except Exception:  # never let one odd reply end sampling for good
                log.exception("protection %s: sampling failed", self.id)
            await asyncio.sleep(
                max(0.05, self.settings.sample_period - (time.monotonic() - started))
            )

    async def sample(self) -> None:
        """Ask both agents for their status; store a sample and its events."""
        pair = self.pair
        if pair is None:
            return
        statuses: dict[str, dict[str, Any]] = {}
        hosts = {s.name for s in (pair.primary, pair.secondary, pair.standby) if s is not None}
        for name, client in self._probe.items():
            if name not in hosts:  # a pool protection's other pool hosts run none of it
                continue
            try:
                statuses[name] = await client.call("status", timeout=5)
            except ColoppError as exc:
                statuses[name] = {"error": str(exc)}
        self.pids = {
            h: s["pid"]
            for h, s in statuses.items()
            if s.get("vm_alive") and isinstance(s.get("pid"), int)
        }
        cpu: dict[str, float] = {}
        if self.placement == "lab":  # the agents' QEMUs are processes of this machine
            for host, pid in self.pids.items():
                seconds = read_cpu_seconds(pid)
                if seconds is not None:
                    cpu[host] = seconds
        roles = (pair.primary.name, pair.secondary.name if pair.secondary else None)
        now = time.time()
        sample, events = digest(self.memory, self.tally, statuses, roles, now, cpu)
        sample["state"] = self.state.value
        fields = {"checkpoints": sample["checkpoints"]}
        fields["last_checkpoint_at"] = sample["last_checkpoint_at"]
        if self.writer is not None:
            self.writer.submit(SampleWrite(self.id, now, sample, events, fields))
            return
        self.store.add_sample(self.id, now, sample)
        self.store.add_events(self.id, events)
        self.store.update_protection(self.id, **fields)

    # -- client actions (called with self.lock held) ---------------------------------------
    def begin(self, announced: ApiState) -> None:
        """Report an accepted action's state at once (its task starts on the next turn)."""
        self._set_phase(announced, None)

    def start_action(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run an accepted action in the background (:attr:`lock` is held by the caller)."""
        self._spawn("action", self.run_action(work))

    async def run_action(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` with the supervisor paused; releases :attr:`lock` when done."""
        try:
            await self._unsupervise()
            await work()
        except ColoppError as exc:
            self.event("error", message=str(exc))
            log.warning("protection %s: %s", self.id, exc)
        except Exception as exc:  # the lock must be released and the failure shown
            self.event("error", message=f"internal error: {exc!r}")
            log.exception("protection %s: action failed unexpectedly", self.id)
        finally:
            if self.phase in (ApiState.FAILING_OVER, ApiState.REPROTECTING):
                self._set_phase(None, self.reason)
            if self.pair is not None and not self.stopped and self.phase is None:
                self._supervise()
            self.lock.release()

    async def failover(self) -> None:
        """Fence the primary and let the secondary serve (re-protection follows when the
        protection has ``auto_reprotect``)."""
        pair = self.pair
        assert pair is not None
        lost = pair.primary.name
        incident = Incident("primary", lost, "manual", time.time())
        self.incidents.append(incident)
        started = time.monotonic()
        await self._fence(lost)
        incident.fenced = True
        self.phase = None  # from here the pair's own FAILING_OVER → FAILED_OVER speak
        result = await pair.failover(Role.PRIMARY)
        incident.failover_ms = (time.monotonic() - started) * 1000
        incident.guest_running_ms = result.get("guest_running_ms")
        incident.timeline_ms = [tuple(item) for item in result.get("timeline_ms") or []]
        self._on_incident(incident)

    async def switchover(self) -> None:
        pair = self.pair
        assert pair is not None
        incident = Incident("primary", pair.primary.name, "switchover", time.time())
        self.incidents.append(incident)
        self.phase = None
        result = await pair.switchover()
        incident.reprotect_s = result.get("reprotect_s")
        self._on_incident(incident)

    async def reprotect(self) -> None:
        pair = self.pair
        assert pair is not None
        self.phase = None
        result = await pair.reprotect()
        self.event("reprotected", primary=pair.primary.name, reprotect_s=result.get("reprotect_s"))

    async def _fence(self, host: str, timeout: float = 10.0) -> None:
        await fence(self._beat[host], SystemClock(), timeout, call_timeout=5.0)

    async def unprotect(self, stop: bool) -> None:
        """Leave COLO: the primary serves alone (or, with ``stop``, everything goes)."""
        self._set_phase(ApiState.UNPROTECTING, "stop requested" if stop else None)
        task = self._tasks.pop("protect", None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pair = self.pair
        serving = pair is not None and pair.state in (PairState.PROTECTED, PairState.FAILED_OVER)
        if stop or not serving or pair is None:
            await self._teardown(None)
            return
        if pair.state is PairState.PROTECTED and pair.secondary is not None:
            secondary = pair.secondary.name
            await self._fence(secondary)
            await pair.failover(Role.SECONDARY)
        if pair.standby is not None:
            await self._beat[pair.standby.name].call("stop_vm", timeout=30)
        self._set_phase(ApiState.UNPROTECTED, f"{pair.primary.name} serves alone")

    async def _teardown(self, error: str | None) -> None:
        """Stop both QEMUs, the lab and its agents (lab placement); never raises."""
        try:
            await self._unsupervise()
            await self.close()
            if self.pair is not None:
                self.pair.lifecycle.on_change = None
                await self.pair.stop()
                await self._release_slots(self.pair)
            if self.deployment is not None:
                await self.deployment.stop()
                placement.release_lock_holder(self.runtime.get("lock_holder"))
        except Exception as exc:  # the state must still say what happened
            log.exception("protection %s: teardown failed", self.id)
            error = f"{error}; teardown failed: {exc!r}" if error else f"teardown failed: {exc!r}"
        self.stopped = True
        if error is not None:
            self._set_phase(ApiState.ERROR, error)
            self.event("error", message=error)
        else:
            self._set_phase(ApiState.UNPROTECTED, "stopped")

    async def _release_slots(self, pair: PairController) -> None:
        """A pool protection frees its slot on every host (its sides are stopped)."""
        for agent in pair.agents.values():
            if isinstance(agent, ProtectionAgent):
                with contextlib.suppress(ColoppError):
                    await agent.release(timeout=10)

    async def close(self) -> None:
        """Stop watching (the pair keeps running: the agents own it)."""
        await self._unsupervise()
        for name in ("sample",):
            task = self._tasks.pop(name, None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for client in (*self._beat.values(), *self._probe.values()):
            await client.close()

    async def shutdown(self) -> None:
        """API shutdown: stop watching, cancel a protect in flight, keep the pair."""
        task = self._tasks.pop("protect", None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.close()
