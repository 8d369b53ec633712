"""The CLI verbs that go through the REST API (``COLOPP_API_URL`` + token).

``colopp list``, ``events``, ``unprotect``, ``reprotect``, and the API side of ``status``,
``protect``, ``failover`` and ``switchover``. Human output (rich) on stdout by default,
JSON with ``--json``; errors on stderr with the exit codes of :mod:`colopp.cli_exit`.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from colopp.cli_exit import Exit, fail
from colopp.errors import ColoppError

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The protection's name (or id).")]
err = Console(stderr=True)

#: Settled states of an action (``error`` always ends a wait).
SETTLED = {
    "failover": {"protected", "failed_over"},
    "switchover": {"protected"},
    "reprotect": {"protected"},
    "unprotect": {"unprotected"},
    "protect": {"protected"},
}


def configured() -> bool:
    """Whether protection verbs go through an API (``COLOPP_API_URL`` is set)."""
    from colopp_api.client import configured as api_configured

    return api_configured()


def _client() -> Any:
    from colopp_api.client import ApiClient

    return ApiClient.from_env()


def _run(work: Callable[[Any], Any]) -> Any:
    """``work(ApiClient)``; a ColoppError exits with its code."""
    try:
        return work(_client())
    except ColoppError as exc:
        raise fail(exc, err) from exc


def lookup(api: Any, name: str) -> dict[str, Any]:
    """The protection called ``name`` (or with that id): the active one if a stopped one
    has the same name.

    Raises:
        ApiError: none (status 404), or several active ones (400).
    """
    from colopp_api.client import ApiError

    matches = [p for p in api.protections() if name in (p["name"], p["id"])]
    active = [p for p in matches if not p["stopped"]]
    if len(active) > 1:
        raise ApiError(f"{len(active)} active protections are called {name!r}: use the id", 400)
    if not matches:
        raise ApiError(f"no protection called {name!r} (see `colopp list`)", 404)
    chosen: dict[str, Any] = active[0] if active else matches[-1]
    return chosen


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _side(side: dict[str, Any] | None) -> str:
    if not side:
        return "-"
    return f"{side['host']} ({side['pid']})" if side.get("pid") else str(side["host"])


def _emit_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def protections_table(protections: list[dict[str, Any]]) -> Table:
    table = Table(title="protections")
    for column in ("name", "id", "state", "primary", "secondary", "checkpoints", "updated"):
        table.add_column(column)
    for p in protections:
        state = p["state"] + (" (stopped)" if p["stopped"] else "")
        table.add_row(
            p["name"],
            p["id"],
            state,
            _side(p.get("primary")),
            _side(p.get("secondary")),
            str(p.get("checkpoints", 0)),
            _when(p.get("updated_at")),
        )
    return table


def protection_table(p: dict[str, Any]) -> Table:
    table = Table(title=f"protection {p['name']}", show_header=False)
    table.add_row("id", p["id"])
    table.add_row("state", p["state"] + (" (stopped)" if p["stopped"] else ""))
    if p.get("reason"):
        table.add_row("reason", str(p["reason"]))
    table.add_row("primary", _side(p.get("primary")))
    table.add_row("secondary", _side(p.get("secondary")))
    table.add_row("checkpoints", str(p.get("checkpoints", 0)))
    table.add_row("last checkpoint", _when(p.get("last_checkpoint_at")))
    options = p.get("options") or {}
    scalars = {k: v for k, v in options.items() if isinstance(v, str | int | float)}
    shown = ", ".join(f"{k}={v}" for k, v in scalars.items() if v not in (False, ""))
    table.add_row("options", shown or "-")
    return table


def _report(p: dict[str, Any], json_out: bool, fail_on_error: bool = True) -> None:
    """Print one protection; an action whose protection ended in ``error`` exits 1."""
    if json_out:
        _emit_json(p)
    else:
        Console().print(protection_table(p))
    if fail_on_error and p["state"] == "error":
        err.print(f"[bold red]error:[/] protection {p['name']} is in error: {p.get('reason')}")
        raise typer.Exit(int(Exit.FAILURE))


def list_protections(json_out: JsonFlag = False) -> None:
    """List every protection the API knows (stopped ones too)."""
    found = _run(lambda api: api.protections())
    if json_out:
        _emit_json({"protections": found})
    else:
        Console().print(protections_table(found))


def events(
    name: NameArg,
    json_out: JsonFlag = False,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 100,
    after: Annotated[int, typer.Option(min=0, help="Only events after this id.")] = 0,
    kind: Annotated[
        str | None, typer.Option("--type", help="Only this type (state, failover, ...).")
    ] = None,
) -> None:
    """The protection's events, oldest first (state changes, checkpoints, failovers, ...)."""

    def work(api: Any) -> Any:
        found = lookup(api, name)
        params: dict[str, Any] = {"after": after, "limit": limit}
        if kind is not None:
            params["type"] = kind
        return api.request("GET", f"/v1/protections/{found['id']}/events", params=params)

    page = _run(work)
    if json_out:
        _emit_json(page)
        return
    table = Table(title=f"events of {name}")
    for column in ("id", "time (UTC)", "type", "data"):
        table.add_column(column)
    for event in page["events"]:
        data = ", ".join(f"{k}={v}" for k, v in event["data"].items())
        table.add_row(str(event["id"]), _when(event["t"]), event["type"], data)
    Console().print(table)
    if page.get("next") is not None:
        err.print(f"more: colopp events {name} --after {page['next']}")


def act(action: str, name: str | None, timeout: float, wait: bool, json_out: bool) -> None:
    """Ask the API for ``action`` on the named (or only active) protection; wait for it
    to settle unless ``wait`` is off."""

    def work(api: Any) -> Any:
        found = lookup(api, name) if name is not None else api.find(None)
        if action == "unprotect":
            started = api.request("DELETE", f"/v1/protections/{found['id']}")
        else:
            started = api.request("POST", f"/v1/protections/{found['id']}/{action}")
        if not wait:
            return started
        return api.wait_state(found["id"], SETTLED[action], timeout)

    _report(_run(work), json_out)


def stop_protection(name: str, timeout: float, wait: bool, json_out: bool) -> None:
    """Unprotect and stop the VM too (DELETE ?stop=true)."""

    def work(api: Any) -> Any:
        found = lookup(api, name)
        started = api.request("DELETE", f"/v1/protections/{found['id']}", params={"stop": "true"})
        return api.wait_state(found["id"], {"unprotected"}, timeout) if wait else started

    _report(_run(work), json_out)


def status(name: str | None, json_out: bool) -> None:
    """One protection (``name``) or all of them."""
    if name is not None:
        _report(_run(lambda api: lookup(api, name)), json_out, fail_on_error=False)
        return
    list_protections(json_out)


def protect(body: dict[str, Any], timeout: float, json_out: bool) -> None:
    """Create a protection and wait until it is protected."""

    def work(api: Any) -> Any:
        made = api.request("POST", "/v1/protections", json=body)
        return api.wait_state(made["id"], SETTLED["protect"], timeout)

    _report(_run(work), json_out)
