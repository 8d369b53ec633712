"""A protected pair on this machine: the lab network plus one agent per host namespace.

Used by the demo and the integration tests. The controller (this process, in the root
namespace) reaches the agents over the lab's management network only; QMP sockets stay
inside each agent's host.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from colopp.agent.protocol import DEFAULT_PORT
from colopp.controller.agent_client import AgentClient
from colopp.domain import HostSlot
from colopp.errors import AgentError
from colopp.files import write_private
from colopp.lab import LAB_HOSTS, Lab, LabPlan, Network, Node, netns_argv, ns_path, plan_lab
from colopp.lab.cpuset import CpuPlan, create_groups, remove_groups

HOSTS = (Node.HOST_A, Node.HOST_B)


def write_secret(path: Path, text: str) -> None:
    """Write a 0600 file (created 0600, never readable by others in between)."""
    write_private(path, text)


def processes_in_netns(netns: str) -> list[int]:
    """PIDs whose network namespace is ``netns`` (leftovers to kill at teardown)."""
    try:
        target = os.stat(ns_path(netns))
    except OSError:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            st = os.stat(entry / "ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            pids.append(int(entry.name))
    return pids


@dataclass
class LocalDeployment:
    """The lab, its agents and their clients."""

    plan: LabPlan
    state_dir: Path
    qemu_root: Path | None
    lab: Lab | None = None
    token: str = ""
    agent_procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    agents: dict[str, AgentClient] = field(default_factory=dict)
    # Two hosts on one machine: each host's agent (and its QEMU, comparator) on its CPUs.
    cpu_plan: CpuPlan | None = None
    hosts: tuple[Node, ...] = HOSTS  # the hosts that get an agent (a fleet lab: three)

    def slot(self, node: Node) -> HostSlot:
        """The pair's view of a host: its name, the guest tap, its replication address."""
        return HostSlot(
            node.value,
            self.plan.tap(node).ifname,
            str(self.plan.address(node, Network.REPLICATION)),
        )

    async def start(self) -> None:
        """Create the lab and start an agent in each host namespace.

        Raises:
            LabError / AgentError: the lab or an agent could not be started.
        """
        self.lab = await asyncio.to_thread(Lab.create, self.plan)
        if self.cpu_plan is not None:
            create_groups(self.cpu_plan)
        self.token = secrets.token_urlsafe(32)
        token_file = self.state_dir / "agent.token"
        write_secret(token_file, self.token)
        for node in self.hosts:
            self._spawn_agent(node, token_file)
        for node in self.hosts:
            address = str(self.plan.address(node, Network.MANAGEMENT))
            client = AgentClient(node.value, address, DEFAULT_PORT, self.token)
            try:
                await client.connect(within=20)
            except AgentError as exc:
                raise AgentError(f"{exc}; agent log: {self._log_tail(node)}") from exc
            self.agents[node.value] = client

    def _log_tail(self, node: Node) -> str:
        try:
            return (self.state_dir / f"agent-{node.value}.log").read_text()[-600:]
        except OSError:
            return "(none)"

    def _spawn_agent(self, node: Node, token_file: Path) -> None:
        address = self.plan.address(node, Network.MANAGEMENT)
        repl = self.plan.address(node, Network.REPLICATION)
        argv = [
            sys.executable,
            "-m",
            "colopp.agent",
            "--host",
            node.value,
            "--listen",
            f"{address}:{DEFAULT_PORT}",
            "--listen",
            f"{repl}:{DEFAULT_PORT}",
            "--state-dir",
            str(self.state_dir / node.value),
            "--token-file",
            str(token_file),
        ]
        if self.qemu_root is not None:
            argv += ["--qemu-root", str(self.qemu_root)]
        log = (self.state_dir / f"agent-{node.value}.log").open("ab")
        argv = netns_argv(self.plan.netns(node), argv)
        if self.cpu_plan is not None:  # outside: `ip netns exec` remounts /sys
            argv = self.cpu_plan.wrap(node, argv)
        self.agent_procs[node.value] = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()

    async def restart_agent(self, name: str, timeout: float = 20.0) -> None:
        """Restart one host's agent as an upgrade would: SIGTERM (it exits leaving its VM
        running), then a new agent that re-adopts the VM.

        Raises:
            AgentError: the old agent did not exit within ``timeout`` seconds.
        """
        proc = self.agent_procs[name]
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, timeout)
        except subprocess.TimeoutExpired as exc:
            raise AgentError(f"agent {name} did not exit in {timeout:.0f}s") from exc
        self._spawn_agent(Node(name), self.state_dir / "agent.token")

    async def stop(self) -> None:
        """Stop agents (they stop their QEMU), kill leftovers, remove the lab; never raises."""
        for client in self.agents.values():
            with contextlib.suppress(Exception):
                await client.call("shutdown", timeout=15)
            await client.close()
        for proc in self.agent_procs.values():
            with contextlib.suppress(Exception):
                proc.wait(timeout=10)
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
        for netns in self.plan.namespaces:
            for pid in processes_in_netns(netns):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.cpu_plan is not None:
            remove_groups(self.cpu_plan)
        if self.lab is not None:
            await asyncio.to_thread(self.lab.destroy)


def local_deployment(
    state_dir: Path, qemu_root: Path | None, prefix: str = "colopp", hosts: int = 2
) -> LocalDeployment:
    """A deployment on this machine's lab of ``hosts`` hosts (not started yet)."""
    plan = plan_lab(prefix, hosts)
    return LocalDeployment(plan, state_dir, qemu_root, hosts=LAB_HOSTS[hosts])
