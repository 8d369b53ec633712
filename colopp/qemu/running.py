"""A VM that runs already, in a QEMU colopp did not start: what it is and whether colopp
can take it over (pure: its command line and QMP answers in, a description or a refusal
out).

colopp takes such a VM over by a live migration, on the same host, into a QEMU of its own
that opens the same disk file (see :mod:`colopp.agent.takeover`). The migration carries
RAM and device state only, so the two QEMUs must build the same machine: the VM must look
like the ones colopp starts (``qemu-configs/vm.conf`` and ``takeover.conf``). Each
refusal says what to change on the running VM's command line:

- colopp's QEMU runtime (same version), started with ``-nodefaults`` and a ``-serial``;
- ``-m``, ``-smp``, ``-cpu``, ``-accel`` (or ``-machine accel=``/``-enable-kvm``) as it
  likes, the default machine type, and optionally ``-kernel``/``-initrd``/``-append``;
- exactly one NIC: ``-netdev tap,id=ID,ifname=TAP,vhost=off,vnet_hdr=off`` (COLO's filters
  see no vhost traffic and run without vnet headers) with ``-device
  virtio-net-pci,netdev=ID,mac=MAC,romfile=`` (no option ROM: colopp's copy loads none);
- exactly one disk: a qcow2 or raw *file* given as ``-drive if=none,id=ID,file=PATH,
  format=FMT`` with ``-device virtio-blk-pci,drive=ID``;
- no other device and no option that changes the machine (``-snapshot``, ``-blockdev``,
  ``-bios``, ``-global``...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from colopp.domain import VmSpec
from colopp.errors import ConfigError

#: Options that take no value.
FLAGS = frozenset(
    {"nodefaults", "enable-kvm", "daemonize", "nographic", "no-user-config", "S", "snapshot"}
)
#: Options that change nothing in the guest's machine (monitors, logs, process settings).
HARMLESS = frozenset(
    {
        "name",
        "display",
        "vga",
        "pidfile",
        "qmp",
        "mon",
        "monitor",
        "chardev",
        "daemonize",
        "nographic",
        "no-user-config",
        "D",
        "d",
        "msg",
        "trace",
        "sandbox",
        "runas",
        "S",
        "serial",
        "L",  # where QEMU finds its firmware files (colopp's runtime passes its own)
    }
)
#: Options colopp reads and reproduces.
READ = frozenset(
    {"nodefaults", "m", "smp", "cpu", "accel", "enable-kvm", "machine", "M"}
    | {"kernel", "initrd", "append", "netdev", "device", "drive"}
)
NIC_MODEL = "virtio-net-pci"
DISK_MODEL = "virtio-blk-pci"
FORMATS = ("qcow2", "raw")
#: Where colopp's secondary (secondary.conf: the NIC, then the disk) has its devices.
SECONDARY_SLOTS = {"nic": 2, "disk": 3}


@dataclass(frozen=True)
class RunningVm:
    """What colopp's copy of a running VM must be started with."""

    memory_mb: int
    vcpus: int
    cpu: str
    accel: str
    kernel: Path | None
    initrd: Path | None
    append: str
    mac: str
    tap: str  # the tap the running QEMU holds (colopp's copy gets a new one)
    disk: Path | None = None  # from query-block (see :func:`with_disk`)
    disk_format: str = "qcow2"
    disk_size: int = 0  # virtual size, bytes
    vnet_hdr: bool = False  # its tap carries a virtio-net header (a libvirt domain's does)

    def vm_spec(self, name: str) -> VmSpec:
        """The :class:`VmSpec` both sides of the protection run (validated).

        Raises:
            ConfigError: a value colopp does not accept (named).
        """
        spec = VmSpec(
            name,
            self.kernel,
            self.initrd,
            self.append,
            mac=self.mac,
            memory_mb=self.memory_mb,
            vcpus=self.vcpus,
            accel=self.accel,
            cpu=self.cpu,
            vnet_hdr=self.vnet_hdr,
        )
        spec.validate()
        return spec


def qemu_options(cmdline: list[str]) -> list[str]:
    """The options of a QEMU command line: what follows the ``qemu-system-*`` binary (a
    runtime may start it through a loader, whose own arguments come first).

    Raises:
        ConfigError: no QEMU system emulator on that command line.
    """
    for index, token in enumerate(cmdline):
        if Path(token).name.startswith("qemu-system-"):
            return cmdline[index + 1 :]
    raise ConfigError("the process behind the QMP socket is not a qemu-system-* emulator")


def split_options(argv: list[str]) -> list[tuple[str, str | None]]:
    """``(option, value)`` pairs of a QEMU command line (after the binary); ``--x`` is
    ``-x``. Raises ConfigError on a stray argument or a missing value."""
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("-") or token in ("-", "--"):
            raise ConfigError(f"unexpected argument {token!r} on the VM's command line")
        name = token.lstrip("-")
        if name in FLAGS:
            out.append((name, None))
            i += 1
            continue
        if i + 1 >= len(argv):
            raise ConfigError(f"option -{name} has no value on the VM's command line")
        out.append((name, argv[i + 1]))
        i += 2
    return out


def keyvals(text: str, implied: str) -> dict[str, str]:
    """``a=b,c=d`` (``,,`` is a comma); a first item without ``=`` is ``implied``'s value."""
    items = [part.replace("\0", ",") for part in text.replace(",,", "\0").split(",")]
    out: dict[str, str] = {}
    for index, item in enumerate(items):
        key, sep, value = item.partition("=")
        if not sep:
            if index == 0:
                out[implied] = key
                continue
            out[key] = "on"  # a bare flag
        else:
            out[key] = value
    return out


_SIZE = re.compile(r"^(\d+)([MmGgKk]?)[Bb]?$")


def memory_mb(text: str) -> int:
    """``-m`` in MiB (``256``, ``256M``, ``1G``, ``size=1G``). Raises ConfigError."""
    size = keyvals(text, "size").get("size", "")
    match = _SIZE.match(size)
    if match is None:
        raise ConfigError(f"-m {text}: give the memory as a size such as 1024M or 1G")
    value, unit = int(match.group(1)), match.group(2).upper()
    return {"G": value * 1024, "K": value // 1024}.get(unit, value)


def _accel(options: list[tuple[str, str | None]]) -> str:
    accel = "tcg"
    for name, value in options:
        if name == "enable-kvm":
            accel = "kvm"
        elif name == "accel" and value is not None:
            accel = keyvals(value, "accel")["accel"]
        elif name in ("machine", "M") and value is not None:
            machine = keyvals(value, "type")
            if machine.get("type", "pc") not in ("pc", "none"):
                raise ConfigError(
                    f"-machine {value}: colopp starts the default machine type: leave "
                    "the type out (or use pc)"
                )
            accel = machine.get("accel", accel)
    return accel.split(":")[0]


def inspect_argv(argv: list[str]) -> RunningVm:
    """Read a running QEMU's command line (``/proc/PID/cmdline`` without the binary).

    Raises:
        ConfigError: the VM does not look like one colopp can copy; the message says
            which option to change.
    """
    options = split_options(argv)
    names = {name for name, _ in options}
    unknown = sorted(names - HARMLESS - READ)
    if unknown:
        raise ConfigError(
            f"option(s) {', '.join('-' + u for u in unknown)} change the machine colopp "
            "would have to copy: start the VM without them"
        )
    if "nodefaults" not in names:
        raise ConfigError("start the VM with -nodefaults: colopp's copy has no default devices")
    serials = [v for n, v in options if n == "serial"]
    if len(serials) != 1 or serials[0] == "none":
        raise ConfigError("give the VM exactly one serial port (-serial file:PATH): colopp's has")
    values = {name: value for name, value in options if value is not None}
    netdevs = [keyvals(v, "type") for n, v in options if n == "netdev" and v is not None]
    devices = [keyvals(v, "driver") for n, v in options if n == "device" and v is not None]
    drives = [keyvals(v, "file") for n, v in options if n == "drive" and v is not None]
    tap = _tap(netdevs)
    mac = _nic(devices, tap["id"])
    _disk_device(devices, drives)
    others = [d["driver"] for d in devices if d["driver"] not in (NIC_MODEL, DISK_MODEL)]
    if others:
        raise ConfigError(
            f"device(s) {', '.join(others)}: colopp's copy has one {NIC_MODEL} and one "
            f"{DISK_MODEL} only: remove them"
        )
    smp = keyvals(values.get("smp", "1"), "cpus")
    kernel, initrd = values.get("kernel"), values.get("initrd")
    return RunningVm(
        memory_mb=memory_mb(values.get("m", "128")),
        vcpus=int(smp.get("cpus", "1")),
        cpu=values.get("cpu", "qemu64"),
        accel=_accel(options),
        kernel=Path(kernel) if kernel else None,
        initrd=Path(initrd) if initrd else None,
        append=values.get("append", ""),
        mac=mac,
        tap=tap["ifname"],
    )


def _tap(netdevs: list[dict[str, str]]) -> dict[str, str]:
    if len(netdevs) != 1 or netdevs[0].get("type") != "tap":
        raise ConfigError("give the VM exactly one NIC on a tap netdev (-netdev tap,id=,ifname=)")
    tap = netdevs[0]
    if "ifname" not in tap or "id" not in tap:
        raise ConfigError("name the tap netdev's id= and ifname=: colopp needs its bridge")
    if tap.get("vhost", "off") != "off":
        raise ConfigError("set vhost=off on the tap netdev: COLO's filters do not see vhost")
    if tap.get("vnet_hdr") != "off":
        raise ConfigError("set vnet_hdr=off on the tap netdev: colopp's copy runs without it")
    if tap.get("script", "no") != "no" or tap.get("fd") or tap.get("fds"):
        raise ConfigError("use script=no and a named tap (ifname=), not fd= or a script")
    return tap


def _nic(devices: list[dict[str, str]], netdev: str) -> str:
    nics = [d for d in devices if d.get("netdev") == netdev]
    if len(nics) != 1 or nics[0]["driver"] != NIC_MODEL:
        raise ConfigError(f"the NIC must be one {NIC_MODEL} on netdev {netdev}")
    nic = nics[0]
    if "mac" not in nic:
        raise ConfigError(f"give the {NIC_MODEL} a fixed mac=: colopp's copy needs the same")
    if nic.get("romfile", "default") != "":
        raise ConfigError(f"add romfile= to the {NIC_MODEL}: colopp's copy loads no option ROM")
    return nic["mac"].lower()


def _disk_device(devices: list[dict[str, str]], drives: list[dict[str, str]]) -> None:
    if len(drives) != 1:
        raise ConfigError("give the VM exactly one disk as -drive if=none,id=,file=,format=")
    drive = drives[0]
    if drive.get("if") != "none" or "id" not in drive:
        raise ConfigError("give the disk as -drive if=none,id=ID with a -device virtio-blk-pci")
    if drive.get("format") not in FORMATS:
        raise ConfigError(f"say the disk's format= ({' or '.join(FORMATS)})")
    disks = [d for d in devices if d.get("drive") == drive["id"]]
    if len(disks) != 1 or disks[0]["driver"] != DISK_MODEL:
        raise ConfigError(f"attach the disk with one -device {DISK_MODEL},drive={drive['id']}")


def with_disk(vm: RunningVm, block: list[dict[str, Any]]) -> RunningVm:
    """The disk file from ``query-block``: the one inserted medium, a plain file.

    Raises:
        ConfigError: no disk, several, or not a file colopp can open again.
    """
    inserted = [b["inserted"] for b in block if isinstance(b.get("inserted"), dict)]
    if len(inserted) != 1:
        raise ConfigError(f"the VM has {len(inserted)} disks with a medium; colopp takes one")
    disk = inserted[0]
    fmt = str(disk.get("drv", ""))
    if fmt not in FORMATS:
        raise ConfigError(f"the disk's format is {fmt!r}: use {' or '.join(FORMATS)}")
    path = str(disk.get("file", ""))
    if not path.startswith("/") or path.startswith("json:"):
        raise ConfigError(f"the disk {path!r} is not a local file: give the VM a file disk")
    size = int(dict(disk.get("image", {})).get("virtual-size", 0))
    return replace(vm, disk=Path(path), disk_format=fmt, disk_size=size)


def pci_slots(pci: list[dict[str, Any]]) -> dict[str, int]:
    """``query-pci``: the slot of the NIC (``nic``) and of the disk (``disk``), for the
    copy's ``addr=`` (the migration matches devices by their PCI address)."""
    slots: dict[str, int] = {}
    for bus in pci:
        for dev in bus.get("devices", []):
            klass = int(dict(dev.get("class_info", {})).get("class", -1))
            if klass == 0x0200:
                slots["nic"] = int(dev["slot"])
            elif klass in (0x0100, 0x0180):
                slots["disk"] = int(dev["slot"])
    if set(slots) != {"nic", "disk"}:
        raise ConfigError("query-pci shows no virtio NIC and disk: is this the VM colopp read?")
    if slots != SECONDARY_SLOTS:
        # The secondary colopp starts has them there (NIC first, then the disk), and COLO's
        # migration matches devices by PCI address.
        raise ConfigError(
            f"the VM's NIC is in PCI slot {slots['nic']} and its disk in slot "
            f"{slots['disk']}; colopp's secondary has them in slots 2 and 3: give the NIC's "
            "-device first and the disk's second (or addr=0x2 and addr=0x3)"
        )
    return slots
