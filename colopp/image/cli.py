"""``colopp image ...`` commands (a typer sub-app; colopp.cli mounts it as ``image``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from colopp.cli_exit import Exit, exit_code
from colopp.errors import ColoppError
from colopp.image.builder import DEFAULT_CACHE_DIR, build_image
from colopp.image.cmdline import kernel_cmdline

image_app = typer.Typer(help="The guest image (Debian cloud kernel + busybox initramfs).")


@image_app.callback()
def image_group() -> None:
    """The guest image (Debian cloud kernel + busybox initramfs)."""


@image_app.command("build")
def build_command(
    cache_dir: Annotated[
        Path, typer.Option(help="Where built images are cached.")
    ] = DEFAULT_CACHE_DIR,
    force: Annotated[bool, typer.Option(help="Rebuild even if a cached image matches.")] = False,
    ip: Annotated[str, typer.Option(help="Example guest address for the printed cmdline.")] = (
        "198.18.0.100/24"
    ),
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of a table.")
    ] = False,
    guest: Annotated[
        str, typer.Option(help="kvd (kernel + busybox initramfs) or debian (Debian 12 server).")
    ] = "kvd",
) -> None:
    """Build the guest image, or reuse the cached one for the same inputs."""
    console = Console(stderr=True)
    if guest == "debian":
        _build_debian(cache_dir, force, console, json_out)
        return
    if guest != "kvd":
        console.print(f"[red]error:[/red] unknown guest {guest!r}: kvd or debian")
        raise typer.Exit(int(Exit.USAGE))
    try:
        image = build_image(cache_dir, force=force, console=console)
    except ColoppError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(exit_code(exc)) from exc
    if json_out:
        found = {
            "kernel": str(image.vmlinuz),
            "initrd": str(image.initrd),
            "disk": str(image.disk),
            "disk_format": image.disk_format,
            "disk_size": image.disk_size,
            "release": image.kernel_release,
            "cmdline": kernel_cmdline(ip),
        }
        typer.echo(json.dumps(found))
        return
    table = Table(show_header=False, box=None)
    table.add_row("kernel", str(image.vmlinuz))
    table.add_row("initrd", str(image.initrd))
    table.add_row("disk", f"{image.disk} ({image.disk_format}, {image.disk_size >> 20} MiB)")
    table.add_row("release", image.kernel_release)
    table.add_row("cmdline", kernel_cmdline(ip))
    Console().print(table)


def _build_debian(cache_dir: Path, force: bool, console: Console, json_out: bool) -> None:
    from colopp.image.debian import build_debian_image
    from colopp.qemu.runtime import DEFAULT_ROOT, runtime_from

    qemu_img = None
    if (DEFAULT_ROOT / "usr/bin/qemu-img").exists():
        qemu_img = runtime_from(DEFAULT_ROOT).tool_argv("qemu-img")
    try:
        image = build_debian_image(cache_dir, force=force, console=console, qemu_img=qemu_img)
    except ColoppError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(exit_code(exc)) from exc
    if json_out:
        found = {
            "disk": str(image.disk),
            "disk_format": "qcow2",
            "disk_size": image.disk_size,
            "release": image.kernel_release,
            "address": image.guest_address,
            "memory_mb": image.memory_mb,
            "vcpus": image.vcpus,
        }
        typer.echo(json.dumps(found))
        return
    table = Table(show_header=False, box=None)
    table.add_row("disk", f"{image.disk} (qcow2, {image.disk_size >> 20} MiB, boots with SeaBIOS)")
    table.add_row("release", image.kernel_release)
    table.add_row("address", image.guest_address)
    table.add_row("defaults", f"{image.memory_mb} MiB, {image.vcpus} vCPUs")
    Console().print(table)
