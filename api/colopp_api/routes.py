"""HTTP routes: ``/v1/protections`` and below, ``/metrics``, ``/healthz``."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST

from colopp_api.auth import Reader, Writer
from colopp_api.config import Settings
from colopp_api.db.store import Store
from colopp_api.live.manager import Conflict, ProtectionManager
from colopp_api.live.runner import ProtectionRunner
from colopp_api.prom import exposition
from colopp_api.schemas import (
    ID_PATTERN,
    EventPage,
    MetricSeries,
    PoolHostOut,
    PoolOut,
    PoolSide,
    Problem,
    ProtectionCreate,
    ProtectionList,
    ProtectionOut,
    Service,
    Side,
)
from colopp_api.states import Action, ApiState, refusal

#: How long a request waits for another action on the same protection to finish.
ACTION_WAIT = 30.0

#: The state an accepted action is reported in until the pair's own states take over.
ANNOUNCED = {
    Action.FAILOVER: ApiState.FAILING_OVER,
    Action.SWITCHOVER: ApiState.FAILING_OVER,
    Action.REPROTECT: ApiState.REPROTECTING,
    Action.UNPROTECT: ApiState.UNPROTECTING,
}

router = APIRouter()
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (401, 403, 404, 409, 422)
}
ProtectionId = Annotated[str, Path(pattern=ID_PATTERN, description="the protection's id")]


def _manager(request: Request) -> ProtectionManager:
    manager: ProtectionManager = request.app.state.manager
    return manager


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def present(row: dict[str, Any], runner: ProtectionRunner | None) -> ProtectionOut:
    """A protection row plus what its runner knows live (pids, counters)."""
    pids = runner.pids if runner is not None else {}
    runtime = row["runtime"] or {}
    primary, secondary = row["primary_host"], row["secondary_host"]
    return ProtectionOut(
        id=row["id"],
        name=row["name"],
        placement=row["placement"],
        state=row["state"],
        reason=row["reason"],
        stopped=row["stopped"],
        primary=Side(host=primary, pid=pids.get(primary)) if primary else None,
        secondary=Side(host=secondary, pid=pids.get(secondary)) if secondary else None,
        service=Service(**runtime["service"]) if runtime.get("service") else None,
        options=row["options"],
        checkpoints=row["checkpoints"],
        last_checkpoint_at=row["last_checkpoint_at"],
        counters=runner.tally.comparator if runner is not None else {},
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _hosts_refusal(body: ProtectionCreate, settings: Settings) -> dict[str, Any] | None:
    """Why a ``hosts`` (or ``pool``) placement cannot be accepted by this server, as a
    validation error (``loc``, ``msg``, ``type``) naming the field; None when it can."""
    if body.placement == "pool":
        missing = [
            name
            for name, unset in (
                ("COLOPP_POOL (the pool's hosts)", not settings.pool),
                ("COLOPP_AGENT_TOKEN_FILE (a 0600 file with the agents' token)",
                 settings.agent_token_file is None),
            )
            if unset
        ]  # fmt: skip
        if missing:
            why = f"placement pool needs {' and '.join(missing)}"
            return {"loc": ("body", "placement"), "msg": why, "type": "value_error"}
        return None
    if body.hosts is None:
        return None
    if settings.agent_token_file is None:
        why = "placement hosts needs COLOPP_AGENT_TOKEN_FILE (a 0600 file with the agents' token)"
        return {"loc": ("body", "placement"), "msg": why, "type": "value_error"}
    if settings.agent_networks:
        for role, host in (("primary", body.hosts.primary), ("secondary", body.hosts.secondary)):
            address = ipaddress.IPv4Address(host.endpoint()[0])
            if not any(address in net for net in settings.agent_networks):
                allowed = ", ".join(str(n) for n in settings.agent_networks)
                why = f"agent {host.agent} is outside COLOPP_API_AGENT_NETWORKS ({allowed})"
                return {"loc": ("body", "hosts", role, "agent"), "msg": why, "type": "value_error"}
    return None


def _row(request: Request, protection_id: str) -> dict[str, Any]:
    row = _store(request).protection(protection_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no protection {protection_id}")
    return row


@router.post(
    "/v1/protections", status_code=status.HTTP_201_CREATED, responses=ERRORS, tags=["protections"]
)
async def create_protection(body: ProtectionCreate, request: Request, _: Writer) -> ProtectionOut:
    """Protect a VM; answers at once, the protection continues in the background."""
    refused = _hosts_refusal(body, request.app.state.settings)
    if refused is not None:  # a 422 like pydantic's: a reason and the failing field
        raise RequestValidationError([refused])
    manager = _manager(request)
    try:
        row = await manager.create(body)
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return present(row, manager.runner(row["id"]))


@router.get("/v1/protections", responses=ERRORS, tags=["protections"])
async def list_protections(request: Request, _: Reader) -> ProtectionList:
    """Every protection, oldest first."""
    manager = _manager(request)
    rows = _store(request).protections()
    return ProtectionList(protections=[present(r, manager.runner(r["id"])) for r in rows])


@router.get("/v1/protections/{protection_id}", responses=ERRORS, tags=["protections"])
async def get_protection(protection_id: ProtectionId, request: Request, _: Reader) -> ProtectionOut:
    """One protection: state, roles, pids, checkpoints, comparator counters."""
    return present(_row(request, protection_id), _manager(request).runner(protection_id))


async def _act(
    request: Request,
    protection_id: str,
    action: Action,
    work: Callable[[ProtectionRunner], Callable[[], Awaitable[None]]],
    stop: bool = False,
) -> ProtectionOut:
    """Check and start ``action`` under the protection's lock; 202 once it runs."""
    row = _row(request, protection_id)
    runner = _manager(request).runner(protection_id)
    if runner is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"cannot {action.value}: protection is {row['state']}"
        )
    try:
        await asyncio.wait_for(runner.lock.acquire(), ACTION_WAIT)
    except TimeoutError as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"cannot {action.value} now: another action still runs (protection is"
            f" {runner.state.value}); try again",
        ) from exc
    why = refusal(action, runner.state, runner.stopped)
    if why is None and action is not Action.UNPROTECT and runner.pair is None:
        why = f"cannot {action.value}: the protection is {runner.state.value} and has no pair"
    if why is not None:
        runner.lock.release()
        raise HTTPException(status.HTTP_409_CONFLICT, why)
    runner.begin(ANNOUNCED[action])
    runner.start_action(work(runner))
    return present(_row(request, protection_id), runner)


@router.post(
    "/v1/protections/{protection_id}/failover",
    status_code=status.HTTP_202_ACCEPTED,
    responses=ERRORS,
    tags=["actions"],
)
async def failover(protection_id: ProtectionId, request: Request, _: Writer) -> ProtectionOut:
    """Fence the primary and let the secondary serve; re-protection follows if enabled."""
    return await _act(request, protection_id, Action.FAILOVER, lambda r: r.failover)


@router.post(
    "/v1/protections/{protection_id}/switchover",
    status_code=status.HTTP_202_ACCEPTED,
    responses=ERRORS,
    tags=["actions"],
)
async def switchover(protection_id: ProtectionId, request: Request, _: Writer) -> ProtectionOut:
    """Planned handover: the secondary serves, the old primary's host becomes secondary."""
    return await _act(request, protection_id, Action.SWITCHOVER, lambda r: r.switchover)


@router.post(
    "/v1/protections/{protection_id}/reprotect",
    status_code=status.HTTP_202_ACCEPTED,
    responses=ERRORS,
    tags=["actions"],
)
async def reprotect(protection_id: ProtectionId, request: Request, _: Writer) -> ProtectionOut:
    """Start a new secondary on the lost host and return to COLO."""
    return await _act(request, protection_id, Action.REPROTECT, lambda r: r.reprotect)


@router.delete(
    "/v1/protections/{protection_id}",
    status_code=status.HTTP_202_ACCEPTED,
    responses=ERRORS,
    tags=["protections"],
)
async def unprotect(
    protection_id: ProtectionId,
    request: Request,
    _: Writer,
    stop: Annotated[bool, Query(description="also stop the VM (and the lab)")] = False,
) -> ProtectionOut:
    """Unprotect: the primary keeps serving alone, or with ``stop=true`` everything stops."""

    def work(runner: ProtectionRunner) -> Callable[[], Awaitable[None]]:
        return lambda: runner.unprotect(stop)

    return await _act(request, protection_id, Action.UNPROTECT, work, stop)


@router.get("/v1/protections/{protection_id}/events", responses=ERRORS, tags=["observe"])
async def events(
    protection_id: ProtectionId,
    request: Request,
    _: Reader,
    after: Annotated[int, Query(ge=0, le=2**62, description="last event id seen")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    type: Annotated[
        str | None, Query(pattern=r"^[a-z_]{1,32}$", description="only this event type")
    ] = None,
) -> EventPage:
    """Events, oldest first, ``limit`` at a time: state, checkpoint, divergence, failover,
    switchover, reprotected, progress, error, reattached."""
    _row(request, protection_id)
    page = _store(request).events(protection_id, after, limit, type)
    following = page[-1]["id"] if len(page) == limit else None
    return EventPage(events=page, next=following)  # type: ignore[arg-type]


@router.get("/v1/protections/{protection_id}/metrics", responses=ERRORS, tags=["observe"])
async def metrics_series(
    protection_id: ProtectionId,
    request: Request,
    _: Reader,
    since: Annotated[
        float, Query(ge=0, le=1e11, allow_inf_nan=False, description="unix time, exclusive")
    ] = 0.0,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 3600,
) -> MetricSeries:
    """Samples (about one a second) newer than ``since``, oldest first."""
    _row(request, protection_id)
    return MetricSeries(samples=_store(request).samples(protection_id, since, limit))


@router.get("/v1/pool", responses=ERRORS, tags=["protections"])
async def get_pool(request: Request, _: Reader) -> PoolOut:
    """The pool's hosts (``COLOPP_POOL``) and the sides of pool protections on each."""
    settings: Settings = request.app.state.settings
    sides: dict[str, list[PoolSide]] = {m.name: [] for m in settings.pool}
    for row in _store(request).protections():
        if row["placement"] != "pool" or row["stopped"]:
            continue
        for role in ("primary", "secondary"):
            host = row[f"{role}_host"]
            if host in sides:
                sides[host].append(PoolSide(protection=row["id"], name=row["name"], role=role))
    return PoolOut(
        hosts=[
            PoolHostOut(
                name=m.name,
                address=m.address,
                port=m.port,
                repl_ip=m.repl_ip,
                slots=m.slots,
                sides=sides[m.name],
            )
            for m in settings.pool
        ]
    )


@router.get(
    "/metrics", tags=["observe"], responses={401: {"model": Problem}, 403: {"model": Problem}}
)
async def prometheus_metrics(request: Request, _: Reader) -> Response:
    """Prometheus exposition format."""
    body = exposition(_manager(request), _store(request))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", tags=["observe"])
async def healthz(request: Request) -> dict[str, str]:
    """Liveness, open to all; a fleet replica also says whether it leads."""
    _store(request).protections()
    leadership = getattr(request.app.state, "leadership", None)
    if leadership is None:
        return {"status": "ok"}
    return {"status": "ok", "role": leadership.role}


__all__ = ["ApiState", "router"]
