"""``colopp demo --dashboard``: the demo's pair is a protection of the REST API.

The API (``colopp_api``, the app ``colopp serve`` runs) is served in this process on
loopback with a fresh SQLite database and fresh tokens. The demo asks it over HTTP to
protect the VM on the lab; from then on the API's runner owns the pair and its
:class:`~colopp.controller.supervisor.PairSupervisor` detects the kill, fails over and
re-protects, exactly as for any API protection. The dashboard shows it all; the demo
watches the same runner (:class:`ServedPair`) to tell the story.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from rich.console import Console

from colopp.controller.pair import PairController
from colopp.controller.supervisor import Incident
from colopp.demo.harness import Watched
from colopp.demo.options import READ_PREFIXES, DemoOptions
from colopp.errors import ColoppError
from colopp.lab import LabPlan

SHOWN_EVENTS = {"state", "progress", "failover", "reprotected", "error"}


class ServedPair(Watched):
    """The pair of one API protection, as its runner holds it."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner

    @property
    def pair(self) -> PairController:  # type: ignore[override]
        pair: PairController | None = self.runner.pair
        if pair is None:
            raise ColoppError("the protection has no pair (yet)")
        return pair

    @property
    def plan(self) -> LabPlan:
        plan: LabPlan = self.runner.deployment.plan
        return plan

    @property
    def incidents(self) -> list[Incident]:
        found: list[Incident] = self.runner.incidents
        return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DashboardApi:
    """The API and its dashboard, served in this process until :meth:`close`."""

    def __init__(self, state_dir: Path, qemu_root: Path | None, port: int | None) -> None:
        from colopp_api.app import create_app
        from colopp_api.config import Settings

        api_dir = state_dir / "api"
        api_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        database = api_dir / "demo.db"
        database.unlink(missing_ok=True)  # each demo starts with an empty API
        self.write_token = secrets.token_urlsafe(24)
        self.read_token = secrets.token_urlsafe(24)
        self.settings = Settings(
            state_dir=api_dir,
            database_url=f"sqlite:///{database}",
            write_token=self.write_token,
            read_token=self.read_token,
            qemu_root=qemu_root,
        )
        self.app = create_app(self.settings)
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            loop="asyncio",
            http="h11",
            lifespan="on",
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
        self.server = QuietServer(config)
        self._task: asyncio.Task[None] | None = None
        self.http = httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.write_token}"},
            timeout=30,
        )

    async def start(self, timeout: float = 30) -> None:
        """Serve; returns once the API answers.

        Raises:
            ColoppError: it did not start.
        """
        self._task = asyncio.create_task(self.server.serve())
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if self._task.done() or time.monotonic() > deadline:
                raise ColoppError(f"the API did not start on {self.url}")
            await asyncio.sleep(0.05)  # uvicorn flags `started` once it listens

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call; its JSON.

        Raises:
            ColoppError: the API refused it (with its reason) or did not answer.
        """
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ColoppError(f"API {method} {path}: {exc}") from exc
        if response.status_code >= 400:
            raise ColoppError(f"API {method} {path}: {response.status_code} {response.text}")
        return response.json()

    def runner(self, protection_id: str) -> Any:
        return self.app.state.manager.runner(protection_id)

    async def close(self) -> None:
        """Stop serving (the protections must have been stopped before)."""
        await self.http.aclose()
        self.server.should_exit = True
        if self._task is not None:
            await self._task


class QuietServer(uvicorn.Server):
    """uvicorn's Server without its signal handlers: Ctrl-C belongs to the demo."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def follow_events(api: DashboardApi, protection_id: str, console: Console) -> None:
    """Log the protection's events as they come (until cancelled)."""
    after = 0
    while True:
        with contextlib.suppress(ColoppError):
            page = await api.request(
                "GET", f"/v1/protections/{protection_id}/events", params={"after": after}
            )
            for event in page["events"]:
                after = event["id"]
                if event["type"] not in SHOWN_EVENTS:
                    continue
                data = event["data"]
                if event["type"] == "state":
                    why = data.get("reason") or ""
                    console.log(f"api: {data.get('source')} → {data.get('target')} {why}")
                elif event["type"] == "progress":
                    console.log(f"api: {data.get('message')}")
                else:
                    shown = ", ".join(f"{k}={v}" for k, v in data.items() if v is not None)
                    console.log(f"api {event['type']}: {shown}")
        await asyncio.sleep(0.25)  # the API has no push channel but the dashboard stream


async def wait_protected(api: DashboardApi, protection_id: str, timeout: float = 600) -> ServedPair:
    """Wait until the protection is protected.

    Raises:
        ColoppError: it ended in error, or not within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        current = await api.request("GET", f"/v1/protections/{protection_id}")
        if current["state"] == "protected":
            return ServedPair(api.runner(protection_id))
        if current["state"] == "error":
            raise ColoppError(f"the API could not protect the VM: {current['reason']}")
        if time.monotonic() > deadline:
            raise ColoppError(f"not protected within {timeout:.0f}s ({current['state']})")
        await asyncio.sleep(0.25)  # the protection runs in the background


async def stop_served(api: DashboardApi, protection_id: str, timeout: float = 120) -> None:
    """Unprotect with ``stop=true`` (QEMUs, agents, lab) and wait until stopped."""
    await api.request("DELETE", f"/v1/protections/{protection_id}", params={"stop": "true"})
    deadline = time.monotonic() + timeout
    while not (await api.request("GET", f"/v1/protections/{protection_id}"))["stopped"]:
        if time.monotonic() > deadline:
            raise ColoppError(f"protection {protection_id} not stopped within {timeout:.0f}s")
        await asyncio.sleep(0.25)  # the teardown runs in the background


@contextlib.asynccontextmanager
async def served_pair(
    options: DemoOptions, console: Console, summary: dict[str, Any]
) -> AsyncIterator[ServedPair]:
    """The API served here, the VM protected through it; stopped (``stop=true``) on exit."""
    console.rule("[bold]1. the REST API and its dashboard, in this process")
    api = DashboardApi(options.state_dir, options.qemu_root, options.dashboard_port)
    await api.start()
    console.log(f"dashboard: [bold]{api.url}/dashboard[/]  (loopback; from elsewhere: ssh -L)")
    console.log(f"read token for the dashboard: [bold]{api.read_token}[/]")
    console.log(f"write token (for `colopp` with COLOPP_API_URL={api.url}): {api.write_token}")
    body: dict[str, Any] = {
        "name": "demo",
        "placement": "lab",
        "comparator": options.comparator.value,
        "checkpoint_delay_ms": options.checkpoint_delay_ms,
        "guest": options.guest,
    }
    if options.colo_plus:
        body |= {"prerelease": "auto", "read_prefixes": list(READ_PREFIXES), "semiactive": True}
    tail: asyncio.Task[None] | None = None
    protection_id: str | None = None
    try:
        console.rule("[bold]2-3. protect through the API: runtime, image, lab, agents, COLO")
        made = await api.request("POST", "/v1/protections", json=body)
        protection_id = str(made["id"])
        tail = asyncio.create_task(follow_events(api, protection_id, console))
        sp = await wait_protected(api, protection_id)
        summary.update(
            accel=sp.pair.config.vm.accel,
            prerelease=sp.pair.config.options.prerelease is not None,
            semiactive=sp.pair.config.options.semiactive,
            guest=options.guest,
            vcpus=sp.pair.config.vm.vcpus,
            memory_mb=sp.pair.config.vm.memory_mb,
            boot_s=sp.pair.boot_s,
            api_url=api.url,
        )
        console.log("the API's supervisor watches the pair: it fails over and re-protects")
        yield sp
    finally:
        console.rule("[bold]teardown")
        try:
            if protection_id is not None:
                await stop_served(api, protection_id)
        finally:
            if tail is not None:
                tail.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await tail
            await api.close()
        console.log("QEMU processes, agents, namespaces and the API stopped")
