"""The guest's kernel command line (pure).

The guest takes its address from the command line, so the same image serves
any VM: ``colopp.ip=ADDR/PREFIX`` configures eth0, ``colopp.gw=ADDR`` adds a
default route, ``colopp.ip6=ADDR/PREFIX`` adds an IPv6 address (without it the guest's
IPv6 stays off).  Its /init prints :data:`READY_MARKER` on ttyS0 once the
services answer, or a line starting with :data:`FAILED_MARKER`.
"""

from __future__ import annotations

import ipaddress

from colopp.errors import ConfigError

READY_MARKER = "COLOPP-GUEST-READY"
FAILED_MARKER = "COLOPP-GUEST-FAILED"

#: ``panic=-1`` reboots at once instead of hanging on a kernel panic. ``tsc=reliable``
#: turns off the clocksource watchdog's check of the TSC. Under TCG the watchdog compares
#: the emulated TSC with the emulated HPET, sees them drift, and marks the TSC unstable at a
#: random moment (session 14: 16 s after boot on one guest of a pair, not on the other).
#: The kernel then reads the clock from the HPET, an emulated device access each time. It is
#: a suspect, not a proven cause, for the bench's 1.9x closed-loop swing between two runs.
#: On KVM the guest prefers kvm-clock, and the flag changes nothing.
_BASE_ARGS = ("console=ttyS0", "quiet", "panic=-1", "tsc=reliable")


def kernel_cmdline(
    ip_cidr: str,
    gateway: str | None = None,
    *,
    shell: bool = False,
    ip6_cidr: str | None = None,
) -> str:
    """The ``-append`` string for a guest at ``ip_cidr`` (e.g. ``198.18.0.100/24``).

    ``shell`` keeps a root shell on the serial console (debugging only); ``ip6_cidr``
    (e.g. ``fd63:6f6c:6f70::100/64``) gives eth0 an IPv6 address too.
    Raises :class:`ConfigError` for an address that is not IPv4 with a prefix,
    an ``ip6_cidr`` that is not IPv6 with a prefix, or a gateway outside the guest's subnet.
    """
    try:
        iface = ipaddress.IPv4Interface(ip_cidr)
    except ValueError as exc:
        raise ConfigError(f"guest address {ip_cidr!r} is not IPv4 ADDR/PREFIX") from exc
    if "/" not in ip_cidr:
        raise ConfigError(f"guest address {ip_cidr!r} needs a prefix length, e.g. /24")
    args = [*_BASE_ARGS, f"colopp.ip={iface.with_prefixlen}"]
    if gateway is not None:
        try:
            gw = ipaddress.IPv4Address(gateway)
        except ValueError as exc:
            raise ConfigError(f"gateway {gateway!r} is not an IPv4 address") from exc
        if gw not in iface.network:
            raise ConfigError(f"gateway {gw} is outside the guest's network {iface.network}")
        args.append(f"colopp.gw={gw}")
    if ip6_cidr is not None:
        try:
            iface6 = ipaddress.IPv6Interface(ip6_cidr)
        except ValueError as exc:
            raise ConfigError(f"guest address {ip6_cidr!r} is not IPv6 ADDR/PREFIX") from exc
        if "/" not in ip6_cidr:
            raise ConfigError(f"guest address {ip6_cidr!r} needs a prefix length, e.g. /64")
        args.append(f"colopp.ip6={iface6.with_prefixlen}")
    if shell:
        args.append("colopp.shell=1")
    return " ".join(args)
