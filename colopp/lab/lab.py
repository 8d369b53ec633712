"""Build and tear down the lab network described by a :class:`~colopp.lab.plan.LabPlan`.

Lifecycle: ``Lab.create(plan)`` → ``ACTIVE`` → ``destroy()`` → ``DESTROYED`` (terminal).
Changing links of a destroyed lab raises :class:`~colopp.errors.StateError`; ``destroy`` may
be called any number of times. ``create`` first removes whatever an earlier run with the same
prefix left behind (a crash, a killed test), so it is safe to re-run.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from enum import Enum
from pathlib import Path
from types import TracebackType

from colopp.errors import ConfigError, LabError, StateError
from colopp.lab.netlink import (
    Rtnl,
    create_namespace,
    list_namespaces,
    remove_namespace,
    write_sysctls,
)
from colopp.lab.plan import (
    LOOPBACK,
    Cable,
    LabPlan,
    Network,
    Node,
    TapPlan,
    check_prefix,
    plan_lab,
)

log = logging.getLogger(__name__)

# IPv6 off in every lab namespace but on the service interfaces (``_service_ipv6``): no DAD,
# router solicitations or MLD reports to wait for or to show up in captures elsewhere.
# ``default`` covers links created later (taps, veth ends).
_QUIET_IPV6 = {
    "net/ipv6/conf/all/disable_ipv6": "1",
    "net/ipv6/conf/default/disable_ipv6": "1",
}


def _service_ipv6(ifname: str) -> dict[str, str]:
    """IPv6 on for one interface, as quiet as it can be: no DAD, no router solicitations,
    no autoconfiguration from router advertisements (``disable_ipv6`` last)."""
    conf = f"net/ipv6/conf/{ifname}"
    return {
        f"{conf}/accept_dad": "0",
        f"{conf}/dad_transmits": "0",
        f"{conf}/router_solicitations": "0",
        f"{conf}/accept_ra": "0",
        f"{conf}/autoconf": "0",
        f"{conf}/disable_ipv6": "0",
    }


def _quiet_ipv6(namespace: str | None, keys: dict[str, str]) -> None:
    # A kernel booted with ipv6.disable=1 has nothing to quiet (and no such sysctls).
    if Path("/proc/sys/net/ipv6").is_dir():
        write_sysctls(namespace, keys)


# Every lab puts the management gateway (198.18.2.1) in the root namespace, so one lab at a
# time per host: ``create`` takes this lock (waiting for another test run or benchmark to
# finish with its lab) and ``destroy`` releases it.
LAB_LOCK = Path(os.environ.get("COLOPP_LAB_LOCK", "/run/colopp-lab.lock"))
LAB_LOCK_TIMEOUT = 3600.0


class _HostLabLock:
    """The host-wide lab lock, shared by the labs of one process (its tests nest labs)."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.holders = 0

    def acquire(self, timeout: float = LAB_LOCK_TIMEOUT) -> None:
        if self.fd is None:
            self.fd = self._lock(timeout)
        self.holders += 1

    def release(self) -> None:
        self.holders -= 1
        if self.holders == 0 and self.fd is not None:
            os.close(self.fd)
            self.fd = None

    @staticmethod
    def _lock(timeout: float) -> int:
        fd = os.open(LAB_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise LabError(
                        f"another lab holds {LAB_LOCK} for more than {timeout:.0f}s"
                    ) from None
                if not waited:
                    log.warning("waiting for another lab on this host to finish (%s)", LAB_LOCK)
                    waited = True
                time.sleep(0.2)  # flock has no timed wait


_HOST_LOCK = _HostLabLock()


def host_lock_fd() -> int | None:
    """The descriptor holding this host's lab lock in this process (None: not held).

    flock belongs to the open file: a process that must keep the lab while it restarts
    (the API) hands this descriptor to a child that outlives it.
    """
    return _HOST_LOCK.fd


class LabState(Enum):
    """Where a :class:`Lab` is in its life."""

    ACTIVE = "active"
    DESTROYED = "destroyed"


def cleanup_leftovers(prefix: str) -> None:
    """Remove every namespace named ``{prefix}-*`` and every root link named ``{prefix}-*``.

    Never raises for things already gone; raises LabError if something that exists cannot be
    removed, and ConfigError for a malformed prefix.
    """
    owned = f"{check_prefix(prefix)}-"
    with Rtnl(None) as root:
        for ifname in root.link_names():
            if ifname.startswith(owned):
                log.info("removing leftover root link %s", ifname)
                root.delete_link(ifname)
    for name in list_namespaces():
        if name.startswith(owned):
            log.info("removing leftover namespace %s", name)
            remove_namespace(name)


def foreign_labs(root_links: dict[str, list[str]], own_prefix: str, claimed: str) -> list[str]:
    """The prefixes of other labs whose root uplink (``{prefix}-mgmt``) holds ``claimed``.

    Every lab claims the same management address in the root namespace: while this
    process holds the host's lab lock, such a lab belongs to a process that ended without
    removing it (a crash, a kill), and its address would divert this lab's agent traffic.
    """
    found = []
    for ifname, addresses in root_links.items():
        prefix, sep, kind = ifname.rpartition("-")
        if sep and kind == "mgmt" and prefix != own_prefix and claimed in addresses:
            found.append(prefix)
    return sorted(found)


def _sweep_foreign_labs(plan: LabPlan) -> None:
    claimed = str(plan.address(Node.CONTROLLER, Network.MANAGEMENT))
    with Rtnl(None) as root:
        links = {n: root.addresses(n) for n in root.link_names() if n.endswith("-mgmt")}
    for prefix in foreign_labs(links, plan.prefix, claimed):
        try:
            check_prefix(prefix)
        except ConfigError:
            continue  # not a name a colopp lab would use: not ours to remove
        log.warning("removing stale lab %s: it holds %s, which this lab needs", prefix, claimed)
        cleanup_leftovers(prefix)


class Lab:
    """A created lab network. Build with :meth:`create`; use as a context manager."""

    def __init__(self, plan: LabPlan) -> None:
        """Wrap an already-built lab; use :meth:`create` to build one."""
        self.plan = plan
        self.state = LabState.ACTIVE
        self._locked = False

    @classmethod
    def attach(cls, plan: LabPlan) -> Lab:
        """The lab of ``plan`` built earlier by another process (e.g. before an API
        restart); its host lock stays with whoever holds it. :meth:`destroy` removes it."""
        return cls(plan)

    @classmethod
    def create(cls, plan: LabPlan | None = None) -> Lab:
        """Build the lab of ``plan`` (default: ``plan_lab()``) after removing leftovers.

        On failure whatever was built is removed again and LabError is raised.
        """
        plan = plan if plan is not None else plan_lab()
        nested = _HOST_LOCK.holders > 0  # this process's own labs are never stale
        _HOST_LOCK.acquire()
        lab = cls(plan)
        lab._locked = True
        try:
            cleanup_leftovers(plan.prefix)
            if not nested:
                _sweep_foreign_labs(plan)
            lab._build()
        except BaseException:
            lab.destroy()
            raise
        log.info("lab %s created", plan.prefix)
        return lab

    def destroy(self) -> None:
        """Remove the lab's root links and namespaces. Idempotent; tolerates missing pieces."""
        plan = self.plan
        # The root uplink is deleted explicitly: it must be gone when this returns, while the
        # kernel frees a removed namespace (and the veths in it) asynchronously.
        with Rtnl(None) as root:
            for ifname in plan.root_links:
                root.delete_link(ifname)
        for name in plan.namespaces:
            remove_namespace(name)
        self.state = LabState.DESTROYED
        self.abandon()

    def abandon(self) -> None:
        """Release the host's lab lock without removing anything, as a crashed process
        would (the next ``create`` with this prefix cleans up)."""
        if self._locked:
            self._locked = False
            _HOST_LOCK.release()

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()

    # -- faults ----------------------------------------------------------------------------

    def set_link(self, node: Node, network: Network, up: bool) -> None:
        """Plug (``up=True``) or pull the cable from ``network`` to ``node``.

        The switch end goes down: the node's end loses carrier but keeps its addresses, so
        plugging it back needs nothing else.
        """
        self._require_active()
        cable = self.plan.cable(node, network)
        with Rtnl(self.plan.switch_netns) as switch:
            switch.set_up(cable.switch_port, up)

    def set_node_links(self, node: Node, up: bool) -> None:
        """Plug or pull every cable of ``node`` (a dead or isolated host)."""
        for cable in self.plan.cables_of(node):
            self.set_link(cable.node, cable.network, up)

    # -- guest taps ------------------------------------------------------------------------

    def add_tap(self, node: Node, ifname: str) -> None:
        """Create persistent tap ``ifname`` on host ``node``, enslaved to its br0, up."""
        self._require_active()
        self._add_tap(TapPlan(node, self.plan.netns(node), ifname, self.plan.tap(node).bridge))

    def delete_tap(self, node: Node, ifname: str) -> None:
        """Delete tap ``ifname`` on host ``node``; a missing tap is not an error."""
        self._require_active()
        with Rtnl(self.plan.netns(node)) as host:
            host.delete_link(ifname)

    # -- building --------------------------------------------------------------------------

    def _require_active(self) -> None:
        if self.state is not LabState.ACTIVE:
            raise StateError(f"lab {self.plan.prefix} is {self.state.value}")

    def _build(self) -> None:
        plan = self.plan
        for name in plan.namespaces:
            create_namespace(name)
            _quiet_ipv6(name, _QUIET_IPV6)
            with Rtnl(name) as ns:
                ns.set_up(LOOPBACK)
        with Rtnl(plan.switch_netns) as switch:
            for network in plan.bridges:
                switch.add_bridge(network.value)
                switch.set_up(network.value)
            for cable in plan.cables:
                self._lay_cable(switch, cable)
        for tap in plan.taps:
            self._add_tap(tap)

    def _lay_cable(self, switch: Rtnl, cable: Cable) -> None:
        switch_netns = self.plan.switch_netns
        if cable.netns is None:
            with Rtnl(None) as root:
                root.add_veth(cable.node_ifname, cable.switch_port, switch_netns)
            _quiet_ipv6(None, {f"net/ipv6/conf/{cable.node_ifname}/disable_ipv6": "1"})
        else:
            switch.add_veth(cable.switch_port, cable.node_ifname, cable.netns)
        switch.set_master(cable.switch_port, cable.network.value)
        switch.set_up(cable.switch_port)
        with Rtnl(cable.netns) as node:
            if cable.node_bridge is not None:
                node.add_bridge(cable.node_bridge)
                # A bridge takes the lowest MAC of its ports; pinning it to the uplink's MAC
                # keeps the host's service MAC (and its peers' ARP caches) stable when guest
                # taps come and go.
                node.set_mac(cable.node_bridge, node.mac_of(cable.node_ifname))
                node.set_master(cable.node_ifname, cable.node_bridge)
                node.set_up(cable.node_bridge)
            node.set_up(cable.node_ifname)
            node.add_address(cable.address_ifname, cable.address)
        if cable.address6 is not None and Path("/proc/sys/net/ipv6").is_dir():
            write_sysctls(cable.netns, _service_ipv6(cable.address_ifname))
            with Rtnl(cable.netns) as node:
                node.add_address(cable.address_ifname, cable.address6)

    def _add_tap(self, tap: TapPlan) -> None:
        with Rtnl(tap.netns) as host:
            if host.index(tap.ifname) is not None:
                raise LabError(f"tap {tap.ifname} already exists in {tap.netns}")
            host.add_tap(tap.ifname)
            host.set_master(tap.ifname, tap.bridge)
            host.set_up(tap.ifname)
