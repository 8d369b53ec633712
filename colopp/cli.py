"""The ``colopp`` command line (typer)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from colopp.errors import ColoppError, ConfigError
from colopp.image.cli import image_app
from colopp.qemu.argv import ComparatorKind
from colopp.virt import Backend

app = typer.Typer(help="colopp: non-stop service for QEMU/KVM VMs (COLO).", no_args_is_help=True)
app.add_typer(image_app, name="image")
qemu_app = typer.Typer(help="The QEMU runtime colopp uses.", no_args_is_help=True)
app.add_typer(qemu_app, name="qemu")
libvirt_app = typer.Typer(help="libvirtd as a colopp backend.", no_args_is_help=True)
app.add_typer(libvirt_app, name="libvirt")
console = Console(stderr=True)


def _fail(exc: ColoppError) -> typer.Exit:
    console.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(1)


@app.command()
def demo(
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the summary here.")
    ] = None,
    comparator: Annotated[
        ComparatorKind, typer.Option(help="Who compares output.")
    ] = ComparatorKind.BUILTIN,
    state_dir: Annotated[Path, typer.Option(help="Run directory.")] = Path("/var/lib/colopp/demo"),
    qemu_root: Annotated[Path | None, typer.Option(help="Private QEMU root.")] = None,
    before_kill: Annotated[
        float, typer.Option(help="Seconds of protected load before the kill.")
    ] = 8.0,
    after_failover: Annotated[float, typer.Option(help="Seconds of load after failover.")] = 8.0,
    guest: Annotated[
        str, typer.Option(help="kvd (kernel + initramfs) or debian (Debian 12, own disk).")
    ] = "kvd",
) -> None:
    """Protect a VM on the local lab, load it, SIGKILL the primary, fail over, summarise."""
    from colopp.demo.run import DemoOptions, print_summary, run_demo

    options = DemoOptions(
        state_dir=state_dir,
        qemu_root=qemu_root,
        comparator=comparator,
        before_kill_s=before_kill,
        after_failover_s=after_failover,
        json_path=json_path,
        guest=guest,
    )
    out = Console()
    try:
        summary = asyncio.run(run_demo(options, out))
    except ColoppError as exc:
        raise _fail(exc) from exc
    print_summary(summary, out)
    if json_path is not None:
        json_path.write_text(json.dumps(summary, indent=2) + "\n")
        out.print(f"summary written to {json_path}")
    ok = (
        summary.get("colo_reached")
        and summary.get("requests_failed") == 0
        and summary.get("connections_reset") == 0
        and summary.get("writes_lost") == 0
    )
    raise typer.Exit(0 if ok else 3)


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


@qemu_app.command("check")
def qemu_check(
    root: Annotated[Path | None, typer.Option(help="Private QEMU root.")] = None,
    binary: Annotated[str | None, typer.Option(help="A QEMU binary instead.")] = None,
    accel: Annotated[str, typer.Option(help="tcg or kvm.")] = "tcg",
) -> None:
    """Say whether the given QEMU can run COLO here."""
    from colopp.qemu.runtime import probe, runtime_from
    from colopp.qemu.version import require_colo_capable

    try:
        runtime = runtime_from(root, binary)
        version = probe(runtime)
        require_colo_capable(version, accel)
    except ColoppError as exc:
        raise _fail(exc) from exc
    console.print(f"QEMU {version} ({runtime.describe()}) can run COLO with {accel}")


def _pair_file(state_dir: Path) -> Path:
    return state_dir / "pair.json"


@app.command()
def status(
    state_dir: Annotated[Path, typer.Option(help="Run directory of the pair.")] = Path(
        "/var/lib/colopp/demo"
    ),
) -> None:
    """Show the pair's state as its agents report it (or the API's, with COLOPP_API_URL)."""
    if _api_configured():
        _api_call(lambda api: {"protections": api.protections()})
        return
    from colopp.controller.saved import load_agents

    async def run() -> dict[str, Any]:
        saved, agents = load_agents(_pair_file(state_dir))
        out: dict[str, Any] = {"saved": saved, "sides": {}}
        for name, agent in agents.items():
            try:
                out["sides"][name] = await agent.call("status", timeout=5)
            except ColoppError as exc:
                out["sides"][name] = {"error": str(exc)}
        return out

    try:
        Console().print_json(json.dumps(asyncio.run(run()), default=str))
    except ColoppError as exc:
        raise _fail(exc) from exc


@app.command()
def failover(
    state_dir: Annotated[Path, typer.Option(help="Run directory of the pair.")] = Path(
        "/var/lib/colopp/demo"
    ),
    force: Annotated[bool, typer.Option(help="Fail over even if the primary still runs.")] = False,
    name: Annotated[str | None, typer.Option(help="Protection name (with COLOPP_API_URL).")] = None,
) -> None:
    """Promote the secondary (the primary is gone): it serves from now on."""
    if _api_configured():
        _api_action("failover", name)
        return
    from colopp.controller.saved import manual_failover

    try:
        result = asyncio.run(manual_failover(_pair_file(state_dir), force=force))
    except ColoppError as exc:
        raise _fail(exc) from exc
    console.print(f"failover done: {result}")


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
    state_dir: Annotated[Path, typer.Option(help="Run directory.")] = Path("/var/lib/colopp/demo"),
    comparator: Annotated[
        ComparatorKind, typer.Option(help="Who compares output.")
    ] = ComparatorKind.BUILTIN,
    qemu_root: Annotated[Path | None, typer.Option(help="Private QEMU root.")] = None,
    name: Annotated[str, typer.Option(help="Protection name (with COLOPP_API_URL).")] = "demo",
    timeout: Annotated[float, typer.Option(help="Seconds to wait (with COLOPP_API_URL).")] = 600,
    backend: Annotated[
        Backend,
        typer.Option(help="Who runs QEMU: the agent, or libvirtd (the domain NAME; API only)."),
    ] = Backend.QEMU,
) -> None:
    """Protect the demo VM on the local lab and keep serving until Ctrl-C (with
    COLOPP_API_URL: ask the API to protect it on its lab and wait until protected)."""
    if _api_configured():
        body = {
            "name": name,
            "placement": "lab",
            "comparator": comparator.value,
            "backend": backend.value,
        }

        def run(api: Any) -> Any:
            made = api.request("POST", "/v1/protections", json=body)
            return api.wait_state(made["id"], {"protected"}, timeout)

        _api_call(run)
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


@app.command()
def switchover(
    record: Annotated[Path | None, typer.Option(help="The pair record (JSON).")] = None,
    status_file: Annotated[
        Path | None, typer.Option("--status", help="The controller's status file.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the new roles.")] = 120.0,
    name: Annotated[str | None, typer.Option(help="Protection name (with COLOPP_API_URL).")] = None,
) -> None:
    """Planned switchover for host maintenance: the secondary serves, then re-protection."""
    if _api_configured():
        _api_action("switchover", name)
        return
    if record is None or status_file is None:
        console.print("[bold red]error:[/] --record and --status are needed without COLOPP_API_URL")
        raise typer.Exit(2)
    from colopp.controller.switch import request_switchover

    try:
        result = request_switchover(record, status_file, timeout)
    except ColoppError as exc:
        raise _fail(exc) from exc
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
) -> None:
    """Run the REST API (uvicorn on the asyncio loop; see README "REST API")."""
    from colopp_api.__main__ import main as serve_main

    raise typer.Exit(serve_main(["--host", host, "--port", str(port)]))


def _api_configured() -> bool:
    from colopp_api.client import configured

    return configured()


def _api_call(work: Any) -> None:
    """Run ``work(ApiClient)`` and print its JSON result; API errors exit 1 with the reason."""
    from colopp_api.client import ApiClient

    try:
        result = work(ApiClient.from_env())
    except ColoppError as exc:
        raise _fail(exc) from exc
    Console().print_json(json.dumps(result, default=str))


def _api_action(action: str, name: str | None) -> None:
    """POST an action on the named (or only) protection and wait for it to settle."""

    def run(api: Any) -> Any:
        found = api.find(name)
        api.request("POST", f"/v1/protections/{found['id']}/{action}")
        settled = {"protected", "failed_over"} if action == "failover" else {"protected"}
        return api.wait_state(found["id"], settled, 300)

    _api_call(run)


if __name__ == "__main__":
    app()
