"""What the Debian guest's root file system gets on top of debootstrap (pure: text out).

The guest is a Debian 12 server booting from its own disk: SeaBIOS runs the MBR
(syslinux's ``mbr.bin``), which chains extlinux on the ext4 root partition, which
loads Debian's cloud kernel and initramfs.  systemd then starts redis-server
(6379), nginx (8080, static files) and colopp's kvd (80), configures a static
address with systemd-networkd and prints :data:`~colopp.image.cmdline.READY_MARKER`
on ttyS0 once all three answer.  Everything that only slows the boot (apt timers,
a getty on tty1, the console font) is masked.
"""

from __future__ import annotations

import ipaddress

from colopp.errors import ConfigError
from colopp.image.cmdline import READY_MARKER

#: The guest's address unless the build is told otherwise (the lab plan's guest address).
DEFAULT_GUEST_ADDRESS = "198.18.0.100/24"
#: Its IPv6 address (the lab plan's ``guest_address6``, on the unique-local service prefix).
DEFAULT_GUEST_ADDRESS6 = "fd63:6f6c:6f70::100/64"
#: Where kvd keeps its keys inside the guest.
KVD_DATA_DIR = "/var/lib/kvd"
#: Static files nginx serves on :8080 (name -> size in bytes); contents are deterministic.
STATIC_FILES: dict[str, int] = {"64k.bin": 64 * 1024, "1m.bin": 1024 * 1024}
NGINX_PORT = 8080
REDIS_PORT = 6379
KVD_PORT = 80

#: Units masked (linked to /dev/null): timers that wake the guest and services the lab
#: does not need.  Masking a unit that is not installed is harmless.
MASKED_UNITS: tuple[str, ...] = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "logrotate.timer",
    "man-db.timer",
    "getty@tty1.service",
    "systemd-timesyncd.service",
    "console-setup.service",
    "keyboard-setup.service",
    "systemd-pstore.service",
    # nginx wants network-online.target; waiting for it adds nothing in a lab with a
    # static address (and up to 2 minutes without a carrier).
    "systemd-networkd-wait-online.service",
)
#: Units enabled (systemctl --root; wanted by multi-user.target).
ENABLED_UNITS: tuple[str, ...] = (
    "systemd-networkd.service",
    "kvd.service",
    "iperf3-colopp.service",
    "colopp-ready.service",
    "serial-getty@ttyS0.service",
)


def check_address(ip_cidr: str) -> ipaddress.IPv4Interface:
    """``ip_cidr`` as an interface; raises :class:`ConfigError` if not IPv4 ADDR/PREFIX."""
    try:
        iface = ipaddress.IPv4Interface(ip_cidr)
    except ValueError as exc:
        raise ConfigError(f"guest address {ip_cidr!r} is not IPv4 ADDR/PREFIX") from exc
    if "/" not in ip_cidr:
        raise ConfigError(f"guest address {ip_cidr!r} needs a prefix length, e.g. /24")
    return iface


def kernel_append(root_device: str = "/dev/vda1") -> str:
    """The kernel command line extlinux passes (serial console, classic eth0 name)."""
    return f"root={root_device} ro console=ttyS0,115200 net.ifnames=0 panic=-1 quiet"


def extlinux_conf(kernel_release: str) -> str:
    """extlinux.conf: boot the only entry at once, its output on the serial port."""
    return (
        "SERIAL 0 115200\n"
        "DEFAULT debian\n"
        "PROMPT 0\n"
        "TIMEOUT 0\n"
        "LABEL debian\n"
        f"  KERNEL /boot/vmlinuz-{kernel_release}\n"
        f"  INITRD /boot/initrd.img-{kernel_release}\n"
        f"  APPEND {kernel_append()}\n"
    )


def network_unit(ip_cidr: str, ip6_cidr: str = DEFAULT_GUEST_ADDRESS6) -> str:
    """systemd-networkd's config for eth0: static IPv4 and IPv6 addresses, no DHCP, no IPv6
    autoconfiguration, no duplicate address detection (both guests of a pair hold the same
    addresses, and the address must be usable at once)."""
    iface = check_address(ip_cidr)
    try:
        iface6 = ipaddress.IPv6Interface(ip6_cidr)
    except ValueError as exc:
        raise ConfigError(f"guest address {ip6_cidr!r} is not IPv6 ADDR/PREFIX") from exc
    return (
        "[Match]\n"
        "Name=eth0\n\n"
        "[Network]\n"
        f"Address={iface.with_prefixlen}\n"
        "LinkLocalAddressing=no\n"
        "IPv6AcceptRA=no\n\n"
        "[Address]\n"
        f"Address={iface6.with_prefixlen}\n"
        "DuplicateAddressDetection=none\n"
    )


def kvd_unit() -> str:
    """kvd as a systemd service on port 80."""
    return (
        "[Unit]\n"
        "Description=colopp key-value daemon (HTTP, port 80)\n"
        "After=network.target\n\n"
        "[Service]\n"
        f"ExecStartPre=/bin/mkdir -p {KVD_DATA_DIR}\n"
        f"ExecStart=/usr/local/sbin/kvd -p {KVD_PORT} -d {KVD_DATA_DIR}\n"
        "Restart=always\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def iperf3_unit() -> str:
    """An iperf3 server, like today's guest runs."""
    return (
        "[Unit]\n"
        "Description=iperf3 server\n"
        "After=network.target\n\n"
        "[Service]\n"
        "ExecStart=/usr/bin/iperf3 -s\n"
        "Restart=always\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def ready_script() -> str:
    """Prints the ready marker on ttyS0 once kvd, redis and nginx answer locally."""
    return f"""#!/bin/bash
# colopp: tell the host the guest serves (kvd, redis, nginx all answer).
probe() {{
    exec 3<>"/dev/tcp/127.0.0.1/$1" 2>/dev/null || return 1
    printf '%b' "$2" >&3
    local reply
    read -r -t 2 reply <&3 || true
    exec 3<&-
    [[ "$reply" == *"$3"* ]]
}}
status=""
for n in $(seq 1 1200); do
    status=""
    probe {KVD_PORT} 'GET /health HTTP/1.0\\r\\n\\r\\n' '200 OK' || status+=" kvd"
    probe {REDIS_PORT} 'PING\\r\\n' '+PONG' || status+=" redis"
    probe {NGINX_PORT} 'HEAD /64k.bin HTTP/1.0\\r\\n\\r\\n' '200 OK' || status+=" nginx"
    if [ -z "$status" ]; then
        echo {READY_MARKER} > /dev/ttyS0
        read -r up _ < /proc/uptime
        echo "colopp-ready: services answer ${{up}}s after the kernel started" > /dev/ttyS0
        exit 0
    fi
    (( n % 50 == 0 )) && echo "colopp-ready: waiting for$status" > /dev/ttyS0
    sleep 0.1
done
echo "COLOPP-GUEST-FAILED not answering:$status" > /dev/ttyS0
exit 1
"""


def ready_unit() -> str:
    """Runs :func:`ready_script` once the services are started."""
    return (
        "[Unit]\n"
        "Description=colopp: report the guest ready on ttyS0\n"
        "After=kvd.service redis-server.service nginx.service systemd-networkd.service\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        "ExecStart=/usr/local/sbin/colopp-ready\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def nginx_site() -> str:
    """nginx's only site: static files on :8080."""
    return (
        "server {\n"
        f"    listen {NGINX_PORT} default_server;\n"
        f"    listen [::]:{NGINX_PORT} default_server;\n"
        "    root /var/www/colopp;\n"
        "    access_log off;\n"
        "    location / { try_files $uri =404; }\n"
        "}\n"
    )


def redis_overrides() -> str:
    """Appended to /etc/redis/redis.conf (later lines win): listen on all, IPv4 and IPv6
    (``-``: IPv6 optional), lab only."""
    return (
        "\n# colopp lab guest: reachable from the clients' namespace.\n"
        "bind 0.0.0.0 -::\n"
        "protected-mode no\n"
    )


def journald_conf() -> str:
    """Keep the journal in RAM: fewer disk writes for COLO to replicate."""
    return "[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n"


def static_file(size: int) -> bytes:
    """Deterministic contents for a static file of ``size`` bytes."""
    block = bytes(range(256))
    return (block * (size // 256 + 1))[:size]


def sfdisk_script(start_sector: int) -> str:
    """One bootable Linux partition from ``start_sector`` to the end of the disk."""
    return f"label: dos\nstart={start_sector}, type=83, bootable\n"


def text_files(kernel_release: str, ip_cidr: str) -> dict[str, tuple[str, int]]:
    """Path inside the root fs -> (contents, mode) for every text file we add."""
    return {
        "etc/hostname": ("colopp-debian\n", 0o644),
        "etc/hosts": ("127.0.0.1 localhost\n127.0.1.1 colopp-debian\n", 0o644),
        "etc/fstab": ("/dev/vda1 / ext4 defaults,noatime 0 1\n", 0o644),
        "boot/extlinux/extlinux.conf": (extlinux_conf(kernel_release), 0o644),
        "etc/systemd/network/10-eth0.network": (network_unit(ip_cidr), 0o644),
        "etc/systemd/system/kvd.service": (kvd_unit(), 0o644),
        "etc/systemd/system/iperf3-colopp.service": (iperf3_unit(), 0o644),
        "etc/systemd/system/colopp-ready.service": (ready_unit(), 0o644),
        "usr/local/sbin/colopp-ready": (ready_script(), 0o755),
        "etc/nginx/sites-available/default": (nginx_site(), 0o644),
        "etc/systemd/journald.conf.d/colopp.conf": (journald_conf(), 0o644),
    }
