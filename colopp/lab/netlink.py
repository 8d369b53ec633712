"""The thin netlink layer of the lab: namespaces, links, addresses and sysctls (pyroute2).

Every pyroute2 / OS error is converted here, once, into :class:`~colopp.errors.LabError`
naming the operation (``raise ... from exc`` keeps the cause). Nothing here knows the lab's
topology; :mod:`colopp.lab.lab` decides what to create.

pyroute2's synchronous :class:`~pyroute2.IPRoute` is used with ``groups=0``: the lab never
listens to netlink broadcasts, so no foreign thread or callback runs lab logic.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from ipaddress import IPv4Interface, IPv6Interface
from pathlib import Path
from types import TracebackType
from typing import Any

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from colopp.errors import LabError
from colopp.lab.plan import ns_path

# Linux interface flag bit (include/uapi/linux/if.h).
_IFF_UP = 0x1

# What a failed netlink or namespace call raises on its way out of pyroute2.
_FOREIGN_ERRORS = (NetlinkError, OSError, ValueError, TimeoutError)


@contextmanager
def lab_operation(operation: str) -> Iterator[None]:
    """Convert pyroute2 and OS errors raised inside into LabError naming ``operation``."""
    try:
        yield
    except _FOREIGN_ERRORS as exc:
        raise LabError(f"{operation} failed: {exc}") from exc


def _is_missing(exc: BaseException) -> bool:
    """True when a netlink/OS error only says the object is already gone."""
    code = exc.code if isinstance(exc, NetlinkError) else getattr(exc, "errno", None)
    return code in (errno.ENODEV, errno.ENOENT, errno.EADDRNOTAVAIL)


def list_namespaces() -> list[str]:
    """Names of the named network namespaces (``ip netns list``)."""
    with lab_operation("list network namespaces"):
        return sorted(str(name) for name in netns.listnetns())


def create_namespace(name: str) -> None:
    """Create the named namespace ``name``; raises LabError if it exists or creation fails."""
    with lab_operation(f"create namespace {name}"):
        if name in netns.listnetns():
            raise FileExistsError(errno.EEXIST, "namespace exists", name)
        netns.create(name)


def remove_namespace(name: str) -> None:
    """Remove the named namespace ``name``; a namespace already gone is not an error.

    The kernel frees the namespace (and every link still in it) once no process holds it.
    """
    with lab_operation(f"remove namespace {name}"), suppress(FileNotFoundError):
        netns.remove(name)


def write_sysctls(namespace: str | None, values: Mapping[str, str]) -> None:
    """Write ``values`` (``net/ipv6/conf/all/disable_ipv6`` style keys) in ``namespace``.

    ``None`` means the root namespace. /proc/sys/net shows the network namespace of the
    thread that opens it, so this thread enters ``namespace`` for the writes and always
    returns to where it was.
    """
    where = namespace or "the root namespace"
    with lab_operation(f"write sysctls in {where}"):
        if namespace is None:
            _write_proc_sys(values)
            return
        fd = os.open(ns_path(namespace), os.O_RDONLY)
        try:
            netns.pushns(fd)
            try:
                _write_proc_sys(values)
            finally:
                netns.popns()
        finally:
            os.close(fd)


def _write_proc_sys(values: Mapping[str, str]) -> None:
    for key, value in values.items():
        Path("/proc/sys", key).write_text(value + "\n")


#: ``ifa_flags`` bit: no duplicate address detection for this address (linux/if_addr.h).
IFA_F_NODAD = 0x02


class Rtnl:
    """An rtnetlink socket in one namespace (``None``: the root namespace).

    Methods take interface names; each raises LabError naming the operation on failure.
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, namespace: str | None) -> None:
        self.namespace = namespace
        self._where = namespace or "root namespace"
        with lab_operation(f"open netlink socket in {self._where}"):
            # flags=0: open an existing namespace only; never create one as a side effect.
            self._ipr: Any = (
                IPRoute(groups=0)
                if namespace is None
                else IPRoute(netns=namespace, flags=0, groups=0)
            )

    def close(self) -> None:
        """Close the socket (idempotent)."""
        with lab_operation(f"close netlink socket in {self._where}"):
            self._ipr.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- queries ---------------------------------------------------------------------------

    def index(self, ifname: str) -> int | None:
        """The index of ``ifname``, or None if there is no such link."""
        with lab_operation(f"look up {ifname} in {self._where}"):
            found = self._ipr.link_lookup(ifname=ifname)
        return int(found[0]) if found else None

    def _require(self, ifname: str) -> int:
        index = self.index(ifname)
        if index is None:
            raise LabError(f"no link {ifname} in {self._where}")
        return index

    def link_names(self) -> list[str]:
        """Names of every link in the namespace."""
        with lab_operation(f"list links in {self._where}"):
            return sorted(str(msg.get("ifname")) for msg in self._ipr.link("dump"))

    def addresses(self, ifname: str) -> list[str]:
        """The addresses on ``ifname`` (without prefix length); empty if it has none."""
        index = self._require(ifname)
        with lab_operation(f"list addresses of {ifname} in {self._where}"):
            return sorted(
                str(msg.get("IFA_ADDRESS")) for msg in self._ipr.addr("dump", index=index)
            )

    def master_of(self, ifname: str) -> str | None:
        """The name of the bridge ``ifname`` is enslaved to, or None."""
        index = self._require(ifname)
        with lab_operation(f"read master of {ifname} in {self._where}"):
            (msg,) = self._ipr.link("get", index=index)
            master = msg.get("master")
            if not master:
                return None
            (master_msg,) = self._ipr.link("get", index=master)
            return str(master_msg.get("ifname"))

    def is_up(self, ifname: str) -> bool:
        """True if ``ifname`` is administratively up."""
        index = self._require(ifname)
        with lab_operation(f"read state of {ifname} in {self._where}"):
            (msg,) = self._ipr.link("get", index=index)
            return bool(int(msg["flags"]) & _IFF_UP)

    def link_info(self, ifname: str) -> dict[str, Any]:
        """``IFLA_LINKINFO`` of ``ifname`` as a flat dict: ``kind`` plus the info-data attrs."""
        index = self._require(ifname)
        with lab_operation(f"read link info of {ifname} in {self._where}"):
            (msg,) = self._ipr.link("get", index=index)
            linkinfo = msg.get_attr("IFLA_LINKINFO")
            info: dict[str, Any] = {"kind": linkinfo.get_attr("IFLA_INFO_KIND")}
            data = linkinfo.get_attr("IFLA_INFO_DATA")
            if data is not None:
                info.update({name: value for name, value in data["attrs"]})
            return info

    # -- changes ---------------------------------------------------------------------------

    def add_bridge(self, ifname: str) -> None:
        """Create bridge ``ifname`` (STP off, the kernel default: ports forward at once).

        Multicast snooping is off: IPv6 neighbour solicitations go to every port, so a
        guest that moved to the other host (a failover) is found without waiting for the
        bridge to learn its MLD report."""
        with lab_operation(f"create bridge {ifname} in {self._where}"):
            self._ipr.link("add", ifname=ifname, kind="bridge", br_mcast_snooping=0)

    def add_veth(self, ifname: str, peer: str, peer_namespace: str) -> None:
        """Create veth ``ifname`` here with its ``peer`` end directly in ``peer_namespace``."""
        with lab_operation(f"create veth {ifname}/{peer} ({self._where} - {peer_namespace})"):
            peer_fd = os.open(ns_path(peer_namespace), os.O_RDONLY)
            try:
                self._ipr.link(
                    "add",
                    ifname=ifname,
                    kind="veth",
                    peer={"ifname": peer, "net_ns_fd": peer_fd},
                )
            finally:
                os.close(peer_fd)

    def add_tap(self, ifname: str, uid: int = 0, gid: int = 0) -> None:
        """Create persistent tap ``ifname``: no packet info, vnet_hdr off, one queue."""
        with lab_operation(f"create tap {ifname} in {self._where}"):
            self._ipr.link(
                "add",
                ifname=ifname,
                kind="tuntap",
                mode="tap",
                uid=uid,
                gid=gid,
                ifr={"no_pi": True, "vnet_hdr": False, "multi_queue": False, "one_queue": False},
            )

    def delete_link(self, ifname: str) -> None:
        """Delete ``ifname`` (a veth takes its peer with it); a missing link is not an error."""
        index = self.index(ifname)
        if index is None:
            return
        try:
            self._ipr.link("del", index=index)
        except _FOREIGN_ERRORS as exc:
            if not _is_missing(exc):
                raise LabError(f"delete {ifname} in {self._where} failed: {exc}") from exc

    def set_master(self, ifname: str, bridge: str) -> None:
        """Enslave ``ifname`` to ``bridge``."""
        index, master = self._require(ifname), self._require(bridge)
        with lab_operation(f"enslave {ifname} to {bridge} in {self._where}"):
            self._ipr.link("set", index=index, master=master)

    def set_up(self, ifname: str, up: bool = True) -> None:
        """Set ``ifname`` administratively up or down."""
        index = self._require(ifname)
        state = "up" if up else "down"
        with lab_operation(f"set {ifname} {state} in {self._where}"):
            self._ipr.link("set", index=index, state=state)

    def set_mac(self, ifname: str, mac: str) -> None:
        """Set the MAC address of ``ifname``."""
        index = self._require(ifname)
        with lab_operation(f"set MAC of {ifname} in {self._where}"):
            self._ipr.link("set", index=index, address=mac)

    def mac_of(self, ifname: str) -> str:
        """The MAC address of ``ifname``."""
        index = self._require(ifname)
        with lab_operation(f"read MAC of {ifname} in {self._where}"):
            (msg,) = self._ipr.link("get", index=index)
            return str(msg.get("address"))

    def add_address(self, ifname: str, address: IPv4Interface | IPv6Interface) -> None:
        """Add ``address`` (with its prefix length) to ``ifname``; an IPv6 address without
        duplicate address detection (usable at once: the lab plans unique addresses)."""
        index = self._require(ifname)
        extra = {"flags": IFA_F_NODAD} if address.version == 6 else {}
        with lab_operation(f"add {address} to {ifname} in {self._where}"):
            self._ipr.addr(
                "add",
                index=index,
                address=str(address.ip),
                prefixlen=address.network.prefixlen,
                **extra,
            )
