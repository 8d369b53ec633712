"""The ``colopp`` command line (typer)."""

from __future__ import annotations

import asyncio
import json
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from colopp import __version__, cli_api
from colopp.cli_api import JsonFlag
from colopp.cli_exit import EPILOG, Exit, fail
from colopp.errors import ColoppError, ConfigError
from colopp.image.cli import image_app
from colopp.qemu.argv import ComparatorKind
from colopp.virt import Backend

HELP = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(
    help="colopp: non-stop service for QEMU/KVM VMs (COLO).",
    epilog=EPILOG,
    no_args_is_help=True,
    context_settings=HELP,
)
app.add_typer(image_app, name="image")
qemu_app = typer.Typer(help="The QEMU runtime colopp uses.", no_args_is_help=True)
app.add_typer(qemu_app, name="qemu")
libvirt_app = typer.Typer(help="libvirtd as a colopp backend.", no_args_is_help=True)
app.add_typer(libvirt_app, name="libvirt")
console = Console(stderr=True)
DEFAULT_STATE_DIR = Path("/var/lib/colopp/demo")
EXIT_OK, EXIT_FAILURE = int(Exit.OK), int(Exit.FAILURE)
NameOption = Annotated[
    str | None, typer.Option(help="Protection name or id (with COLOPP_API_URL).")
]
Timeout = Annotated[float, typer.Option(help="Seconds to wait (with COLOPP_API_URL).")]
Wait = Annotated[bool, typer.Option(help="Wait until the action settled.")]


def _fail(exc: ColoppError) -> typer.Exit:
    return fail(exc, console)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"colopp {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """colopp: non-stop service for QEMU/KVM VMs (COLO)."""


app.command("list")(cli_api.list_protections)
app.command("events")(cli_api.events)


@app.command()
def demo(
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the summary here.")
    ] = None,
    comparator: Annotated[
        ComparatorKind,
        typer.Option(help="colopp (with pre-release and a semi-active secondary) or builtin."),
    ] = ComparatorKind.COLOPP,
    state_dir: Annotated[Path, typer.Option(help="Run directory.")] = DEFAULT_STATE_DIR,
    qemu_root: Annotated[Path | None, typer.Option(help="Private QEMU root.")] = None,
    before_kill: Annotated[
        float, typer.Option(help="Seconds of protected load before the kill.")
    ] = 8.0,
    after_failover: Annotated[
        float, typer.Option(help="Seconds of load once protected again.")
    ] = 8.0,
    hold: Annotated[bool, typer.Option(help="Keep the pair up afterwards until Ctrl-C.")] = False,
    dashboard: Annotated[
        bool,
        typer.Option(
            help="Serve the REST API and its dashboard here (loopback) and protect through it;"
            " prints the URL and a read token."
        ),
    ] = False,
    dashboard_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="The dashboard's port (default: free).")
    ] = None,
    guest: Annotated[
        str, typer.Option(help="kvd (kernel + initramfs) or debian (Debian 12, own disk).")
    ] = "kvd",
) -> None:
    """Protect a VM on the local lab, load it, SIGKILL the primary; the supervisor fails over
    and re-protects; summarise (exit 1 if the client saw a failure or it did not re-protect)."""
    from colopp.demo.options import DemoOptions
    from colopp.demo.run import demo_ok, print_summary, run_demo

    options = DemoOptions(
        state_dir=state_dir,
        qemu_root=qemu_root,
        comparator=comparator,
        before_kill_s=before_kill,
        after_failover_s=after_failover,
        hold=hold,
        dashboard=dashboard,
        dashboard_port=dashboard_port,
        json_path=json_path,
        guest=guest,
    )
    out = Console()
    started = time.monotonic()
    told: dict[str, Any] = {}

    def report(summary: dict[str, Any]) -> None:
        summary["wall_s"] = round(time.monotonic() - started, 1)
        told.update(summary)
        print_summary(summary, out)
        if json_path is not None:
            json_path.write_text(json.dumps(summary, indent=2) + "\n")
            out.print(f"summary written to {json_path}")

    try:
        asyncio.run(run_demo(options, out, report))
    except ColoppError as exc:
        raise _fail(exc) from exc
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C or SIGTERM
        console.print("stopped")
    raise typer.Exit(EXIT_OK if told and demo_ok(told) else EXIT_FAILURE)


@qemu_app.command("install")
def qemu_install(
    root: Annotated[Path | None, typer.Option(help="Where to make the private root.")] = None,
) -> None:
    """Provision Debian trixie-backports' QEMU in a private debootstrap root."""
    from colopp.qemu.runtime import DEFAULT_ROOT, probe, provision

    try:
        runtime = provision(root or DEFAULT_ROOT, step=lambda m: console.log(m))
        console.print(f"QEMU {probe(runtime)} ready: {runtime.describe()}")
    except ColoppError as exc:
        raise _fail(exc) from exc


class Accel(StrEnum):
    """The accelerators COLO runs with."""

    TCG = "tcg"
    KVM = "kvm"


@qemu_app.command("check")
def qemu_check(
    root: Annotated[Path | None, typer.Option(help="Private QEMU root.")] = None,
    binary: Annotated[str | None, typer.Option(help="A QEMU binary instead.")] = None,
    accel: Annotated[Accel, typer.Option(help="The accelerator to check.")] = Accel.TCG,
    json_out: JsonFlag = False,
) -> None:
    """Say whether the given QEMU can run COLO here (exit 1 if it cannot)."""
    from colopp.qemu.runtime import probe, runtime_from
    from colopp.qemu.version import require_colo_capable

    try:
        runtime = runtime_from(root, binary)
        version = probe(runtime)
        require_colo_capable(version, accel.value, options="--root/--binary")
    except ColoppError as exc:
        raise _fail(exc) from exc
    if json_out:
        found = {"version": str(version), "runtime": runtime.describe(), "accel": accel.value}
        typer.echo(json.dumps(found | {"colo_capable": True}))
        return
    console.print(f"QEMU {version} ({runtime.describe()}) can run COLO with {accel.value}")


def _pair_file(state_dir: Path) -> Path:
    return state_dir / "pair.json"


StateDir = Annotated[Path, typer.Option(help="Run directory of the pair.")]


@app.command()
def status(
    name: Annotated[
        str | None, typer.Argument(help="Protection name or id (with COLOPP_API_URL).")
    ] = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    json_out: JsonFlag = False,
) -> None:
    """Show the pair's state as its agents report it (with COLOPP_API_URL: the API's
    protections, or the one named)."""
    if cli_api.configured():
        cli_api.status(name, json_out)
        return
    from colopp.controller.saved import load_agents

    async def run() -> dict[str, Any]:
        saved, agents = load_agents(_pair_file(state_dir))
        out: dict[str, Any] = {"saved": saved, "sides": {}}
        for host, agent in agents.items():
            try:
                out["sides"][host] = await agent.call("status", timeout=5)
            except ColoppError as exc:
                out["sides"][host] = {"error": str(exc)}
            await agent.close()
        return out

    try:
        found = asyncio.run(run())
    except ColoppError as exc:
        raise _fail(exc) from exc
    if json_out:
        typer.echo(json.dumps(found, indent=2, default=str))
        return
    table = Table(title=f"pair {found['saved'].get('state', '?')} ({state_dir})")
    for column in ("host", "COLO mode", "QEMU pid", "alive", "checkpoints"):
        table.add_column(column)
    for host, side in found["sides"].items():
        if "error" in side:
            table.add_row(host, f"[red]{side['error']}", "-", "-", "-")
            continue
        mode = (side.get("colo") or {}).get("mode", "-")
        alive = side.get("vm_alive", "-")
        table.add_row(
            host, str(mode), str(side.get("pid")), str(alive), str(side.get("checkpoints"))
        )
    Console().print(table)


@app.command()
def failover(
    name: NameOption = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    force: Annotated[bool, typer.Option(help="Fail over even if the primary still runs.")] = False,
    timeout: Timeout = 300,
    json_out: JsonFlag = False,
) -> None:
    """Promote the secondary (the primary is gone): it serves from now on."""
    if cli_api.configured():
        cli_api.act("failover", name, timeout, True, json_out)
        return
    from colopp.controller.saved import manual_failover

    try:
        result = asyncio.run(manual_failover(_pair_file(state_dir), force=force))
    except ColoppError as exc:
        raise _fail(exc) from exc
    if json_out:
        typer.echo(json.dumps(result, default=str))
        return
    console.print(f"failover done: {result}")


@app.command()
def reprotect(
    name: cli_api.NameArg,
    timeout: Timeout = 600,
    wait: Wait = True,
    json_out: JsonFlag = False,
) -> None:
    """Re-protect a failed-over (or unprotected, still running) protection: a new secondary
    on the lost host, back to COLO. Through the API (COLOPP_API_URL)."""
    _need_api("reprotect")
    cli_api.act("reprotect", name, timeout, wait, json_out)


@app.command()
def unprotect(
    name: cli_api.NameArg,
    stop: Annotated[bool, typer.Option(help="Also stop the VM (and its lab).")] = False,
    timeout: Timeout = 300,
    wait: Wait = True,
    json_out: JsonFlag = False,
) -> None:
    """Unprotect: the primary keeps serving alone (or, with --stop, everything stops).
    Through the API (COLOPP_API_URL)."""
    _need_api("unprotect")
    if stop:
        cli_api.stop_protection(name, timeout, wait, json_out)
    else:
        cli_api.act("unprotect", name, timeout, wait, json_out)


def _need_api(verb: str) -> None:
    if not cli_api.configured():
        raise _fail(
            ConfigError(
                f"colopp {verb} goes through the API: set COLOPP_API_URL and COLOPP_API_TOKEN"
            )
        )


@libvirt_app.command("setup")
def libvirt_setup(
    root: Annotated[Path | None, typer.Option(help="Private QEMU root.")] = None,
) -> None:
    """Make Debian 12's libvirtd start colopp's working QEMU: write the <emulator> wrapper
    and colopp's block of /etc/libvirt/qemu.conf, switch off network autostart."""
    from colopp.qemu.runtime import DEFAULT_ROOT, runtime_from
    from colopp.virt.libvirt_host import install, plan

    try:
        runtime_from(root or DEFAULT_ROOT)
        host_plan = plan(root or DEFAULT_ROOT)
        for change in install(host_plan):
            console.log(f"wrote {change}")
    except ColoppError as exc:
        raise _fail(exc) from exc
    console.print(
        f"libvirt emulator for COLO domains: {host_plan.emulator}; "
        "restart libvirtd to read /etc/libvirt/qemu.conf"
    )


@app.command()
def protect(
    state_dir: Annotated[Path, typer.Option(help="Run directory.")] = DEFAULT_STATE_DIR,
    comparator: Annotated[
        ComparatorKind, typer.Option(help="Who compares output.")
    ] = ComparatorKind.BUILTIN,
    qemu_root: Annotated[Path | None, typer.Option(help="Private QEMU root.")] = None,
    name: Annotated[str, typer.Option(help="Protection name (with COLOPP_API_URL).")] = "demo",
    timeout: Timeout = 600,
    backend: Annotated[
        Backend,
        typer.Option(help="Who runs QEMU: the agent, or libvirtd (the domain NAME; API only)."),
    ] = Backend.QEMU,
    running_qmp: Annotated[
        Path | None,
        typer.Option(
            help="Protect the VM already running behind this QMP socket on the primary "
            "host, without a restart (API only, with --hosts; README 'Protecting a "
            "running VM' says what the VM must look like)."
        ),
    ] = None,
    running_domain: Annotated[
        str | None,
        typer.Option(
            help="Protect this running libvirt domain without a restart (as --running-qmp)."
        ),
    ] = None,
    hosts: Annotated[
        Path | None,
        typer.Option(
            help="With --running-qmp/--running-domain: JSON {primary: {name, agent, tap, repl_ip}, "
            "secondary: {...}}; the primary is the VM's host."
        ),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Protect the demo VM on the local lab and keep serving until Ctrl-C (with
    COLOPP_API_URL: ask the API to protect it on its lab and wait until protected;
    with --running-qmp and --hosts: protect a VM that already runs)."""
    if running_qmp is not None or running_domain is not None:
        if backend is not Backend.QEMU:
            raise _fail(
                ConfigError(
                    "--running-qmp/--running-domain: colopp's QEMU takes the VM over (backend "
                    "qemu; backend libvirt restarts a stopped domain as its own side domains)"
                )
            )
        _protect_running(name, running_qmp, hosts, comparator, timeout, json_out, running_domain)
        return
    if cli_api.configured():
        body = {
            "name": name,
            "placement": "lab",
            "comparator": comparator.value,
            "backend": backend.value,
        }
        cli_api.protect(body, timeout, json_out)
        return
    if backend is not Backend.QEMU:
        raise _fail(ConfigError("--backend libvirt goes through the API: set COLOPP_API_URL"))
    from colopp.controller.saved import protect_local

    try:
        asyncio.run(protect_local(state_dir, comparator, qemu_root, Console()))
    except ColoppError as exc:
        raise _fail(exc) from exc
    except KeyboardInterrupt:
        console.print("stopped")


def _protect_running(
    name: str,
    running_qmp: Path | None,
    hosts: Path | None,
    comparator: ComparatorKind,
    timeout: float,
    json_out: bool,
    domain: str | None = None,
) -> None:
    from colopp import cli_running

    try:
        if hosts is None:
            raise ConfigError("--running-qmp needs --hosts (the VM's host and the secondary)")
        body = cli_running.running_body(
            name, running_qmp, cli_running.read_hosts(hosts), comparator.value, domain
        )
        checked = None if running_qmp is None else cli_running.precheck(running_qmp)
    except ColoppError as exc:
        raise _fail(exc) from exc
    if checked is not None:
        console.log(f"the VM behind {running_qmp} can be taken over ({checked})")
    _need_api("protect --running-qmp")
    cli_api.protect(body, timeout, json_out)


@app.command()
def switchover(
    name: NameOption = None,
    record: Annotated[Path | None, typer.Option(help="The pair record (JSON).")] = None,
    status_file: Annotated[
        Path | None, typer.Option("--status", help="The controller's status file.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the new roles.")] = 120.0,
    json_out: JsonFlag = False,
) -> None:
    """Planned switchover for host maintenance: the secondary serves, then re-protection."""
    if cli_api.configured():
        cli_api.act("switchover", name, max(timeout, 300), True, json_out)
        return
    if record is None or status_file is None:
        raise _fail(ConfigError("--record and --status are needed without COLOPP_API_URL"))
    from colopp.controller.switch import request_switchover

    try:
        result = request_switchover(record, status_file, timeout)
    except ColoppError as exc:
        raise _fail(exc) from exc
    if json_out:
        typer.echo(json.dumps(result, default=str))
        return
    console.print(
        f"switchover done: {result['primary']} is primary, {result['secondary']} secondary"
    )


@app.command()
def controller(
    record: Annotated[Path, typer.Option(help="The pair record (JSON, 0600).")],
    status_file: Annotated[Path | None, typer.Option("--status", help="Write status here.")] = None,
) -> None:
    """Re-attach to a running pair from its record and supervise it (failover, re-protect)."""
    from colopp.controller.__main__ import main as controller_main

    argv = ["--record", str(record)] + (["--status", str(status_file)] if status_file else [])
    raise typer.Exit(controller_main(argv))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8470,
    tls_cert: Annotated[
        str | None, typer.Option(help="PEM certificate (chain): serve HTTPS.")
    ] = None,
    tls_key: Annotated[str | None, typer.Option(help="PEM key of --tls-cert (0600).")] = None,
) -> None:
    """Run the REST API (uvicorn on the asyncio loop; see README "REST API")."""
    from colopp_api.__main__ import main as serve_main

    argv = ["--host", host, "--port", str(port)]
    argv += ["--tls-cert", tls_cert] if tls_cert is not None else []
    argv += ["--tls-key", tls_key] if tls_key is not None else []
    raise typer.Exit(serve_main(argv))


if __name__ == "__main__":
    app()
