"""The ``colopp`` CLI against a real API (``colopp_api`` on loopback, SQLite): the verbs
``list``, ``events``, ``status``, ``unprotect``, ``reprotect``, ``--json`` output parsed back,
``--version``, ``-h``, and the documented exit code of each failure provoked: unknown name
(3), conflict with the state (4), API down (5), token refused (6), no token (2)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_api_http import HOSTS_BODY

from colopp.cli_exit import Exit
from tests.api.conftest import READ, WRITE, ApiServer, free_port, wait_until


def colopp(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``colopp ARGS`` as a user runs it (a subprocess), with ``env`` on top of ours."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("COLOPP_API")}
    return subprocess.run(
        [sys.executable, "-m", "colopp.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**base, "COLUMNS": "200", **env},
    )


class SilentAgents:
    """Two TCP listeners that accept and never answer: a protection on them stays
    ``starting`` (its first agent call waits), long enough to be unprotected."""

    def __init__(self) -> None:
        self.ports = [free_port(), free_port()]
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _serve(self) -> None:
        self.stop = asyncio.Event()
        writers: list[asyncio.StreamWriter] = []

        async def hold(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)  # never answer; closed at the end

        async def main() -> None:
            servers = [await asyncio.start_server(hold, "127.0.0.1", p) for p in self.ports]
            self.ready.set()
            await self.stop.wait()
            for writer in writers:
                writer.close()
            for server in servers:
                server.close()
                await server.wait_closed()

        self.loop.run_until_complete(main())
        self.loop.close()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    state = tmp_path_factory.mktemp("cli-api")
    server = ApiServer(state, f"sqlite:///{state / 'api.db'}")
    server.start()
    yield server
    server.kill(signal.SIGTERM)


@pytest.fixture(scope="module")
def env(api: ApiServer) -> dict[str, str]:
    return {"COLOPP_API_URL": api.url, "COLOPP_API_TOKEN": WRITE}


@pytest.fixture(scope="module")
def errored(api: ApiServer) -> dict[str, Any]:
    """A protection whose agents are unreachable: it ends in ``error``."""
    body = HOSTS_BODY | {"name": "cli-err"}
    with api.client() as c:
        made = c.post("/v1/protections", json=body)
        assert made.status_code == 201, made.text
        pid = made.json()["id"]
        found: dict[str, Any] = wait_until(
            "error state",
            lambda: (p := c.get(f"/v1/protections/{pid}").json())["state"] == "error" and p,
            30,
        )
    return found


def test_version_and_short_help() -> None:
    done = colopp({}, "--version")
    assert done.returncode == 0 and done.stdout.strip().startswith("colopp 0.")
    root = colopp({}, "-h")
    assert root.returncode == 0 and "Usage" in root.stdout
    for code in ("0 ok", "2 bad usage", "3 not found", "4 conflict", "5 API unreachable"):
        assert code in " ".join(root.stdout.split()), code
    for verb in (
        ["list"],
        ["events"],
        ["status"],
        ["unprotect"],
        ["reprotect"],
        ["demo"],
        ["qemu", "check"],
        ["image", "build"],
    ):
        shown = colopp({}, *verb, "-h")
        assert shown.returncode == 0 and "Usage" in shown.stdout, (verb, shown.stderr)
        if verb[0] in ("list", "events", "status", "unprotect", "reprotect"):
            assert "--json" in shown.stdout, verb


def test_list_and_status_json_and_human(env: dict[str, str], errored: dict[str, Any]) -> None:
    listed = colopp(env, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    names = {p["name"]: p for p in json.loads(listed.stdout)["protections"]}
    assert names["cli-err"]["id"] == errored["id"] and names["cli-err"]["state"] == "error"
    human = colopp(env, "list")
    assert human.returncode == 0 and "cli-err" in human.stdout and errored["id"] in human.stdout
    one = colopp(env, "status", "cli-err", "--json")
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["id"] == errored["id"]
    shown = colopp(env, "status", "cli-err")
    assert shown.returncode == 0 and "error" in shown.stdout and "{" not in shown.stdout
    every = colopp(env, "status", "--json")
    assert "cli-err" in {p["name"] for p in json.loads(every.stdout)["protections"]}
    read_only = colopp(env | {"COLOPP_API_TOKEN": READ}, "list", "--json")
    assert read_only.returncode == 0, read_only.stderr


def test_events_json_by_name_and_type(env: dict[str, str], errored: dict[str, Any]) -> None:
    page = colopp(env, "events", "cli-err", "--json")
    assert page.returncode == 0, page.stderr
    events = json.loads(page.stdout)["events"]
    assert events[0]["type"] == "state" and "error" in {e["type"] for e in events}
    only = json.loads(colopp(env, "events", errored["id"], "--type", "error", "--json").stdout)
    assert only["events"] and {e["type"] for e in only["events"]} == {"error"}
    human = colopp(env, "events", "cli-err", "--limit", "1")
    assert human.returncode == 0 and "state" in human.stdout
    assert "--after" in human.stderr  # says how to read on


def test_unknown_name_exits_3(env: dict[str, str]) -> None:
    for verb in (["events"], ["status"], ["reprotect"], ["unprotect"]):
        done = colopp(env, *verb, "no-such-protection")
        assert done.returncode == Exit.NOT_FOUND, (verb, done.stdout, done.stderr)
        assert "no protection called 'no-such-protection'" in done.stderr


def test_conflict_exits_4_with_the_reason(env: dict[str, str], errored: dict[str, Any]) -> None:
    done = colopp(env, "reprotect", "cli-err", "--json")
    assert done.returncode == Exit.CONFLICT, done.stderr
    assert "cannot reprotect" in " ".join(done.stderr.split())
    assert done.stdout == ""


def test_unprotect_json_then_a_second_unprotect_conflicts(
    env: dict[str, str], api: ApiServer
) -> None:
    agents = SilentAgents()
    try:
        hosts = HOSTS_BODY["hosts"]
        body = HOSTS_BODY | {
            "name": "cli-unprotect",
            "hosts": {
                "primary": {**hosts["primary"], "agent": f"127.0.0.1:{agents.ports[0]}"},  # type: ignore[index]
                "secondary": {**hosts["secondary"], "agent": f"127.0.0.1:{agents.ports[1]}"},  # type: ignore[index]
            },
        }
        with api.client() as c:
            made = c.post("/v1/protections", json=body)
            assert made.status_code == 201, made.text
        done = colopp(env, "unprotect", "cli-unprotect", "--json", "--timeout", "60")
        assert done.returncode == 0, done.stderr
        after = json.loads(done.stdout)
        assert after["name"] == "cli-unprotect" and after["state"] == "unprotected"
        again = colopp(env, "unprotect", "cli-unprotect", "--stop")
        assert again.returncode in (Exit.OK, Exit.CONFLICT), again.stderr
    finally:
        agents.close()


def test_api_down_exits_5(env: dict[str, str]) -> None:
    down = env | {"COLOPP_API_URL": f"http://127.0.0.1:{free_port()}"}
    for verb in (["list"], ["events", "x"], ["reprotect", "x"], ["unprotect", "x"]):
        done = colopp(down, *verb)
        assert done.returncode == Exit.UNREACHABLE, (verb, done.stderr)
        assert "error:" in done.stderr


def test_refused_token_exits_6_and_missing_token_2(env: dict[str, str]) -> None:
    bad = colopp(env | {"COLOPP_API_TOKEN": "wrong-token"}, "list", "--json")
    assert bad.returncode == Exit.DENIED and "401" in bad.stderr and bad.stdout == ""
    read_only = colopp(env | {"COLOPP_API_TOKEN": READ}, "reprotect", "cli-err")
    assert read_only.returncode == Exit.DENIED, read_only.stderr
    missing = colopp({"COLOPP_API_URL": env["COLOPP_API_URL"]}, "list")
    assert missing.returncode == Exit.USAGE and "COLOPP_API_TOKEN" in missing.stderr


def test_api_only_verbs_without_an_api_exit_2(tmp_path: Path) -> None:
    for verb in ("reprotect", "unprotect"):
        done = colopp({}, verb, "x")
        assert done.returncode == Exit.USAGE and "COLOPP_API_URL" in done.stderr
