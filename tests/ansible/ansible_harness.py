"""A two-host colopp deployment target for ansible-playbook, built from real parts.

- the lab network (:mod:`colopp.lab`): namespaces ``P-hosta`` / ``P-hostb`` stand in for the
  hosts, ``P-client`` for a client on the service network, and the root namespace (at
  198.18.2.1 on the management network) for the controller;
- a real ``sshd`` (Debian's openssh-server) in each host namespace on its management address,
  with host and user keys generated here; ansible-playbook reaches the hosts over SSH;
- an inventory in which every host has its own ``colopp_root``: the namespaces share this
  machine's filesystem, so venvs, state dirs, pid files and tokens must not collide.

Teardown (:meth:`AnsibleSite.close`) stops whatever the playbook started (the protection
through the API, then the API and agents by their pid files), sshd, and whatever is left in
the lab's namespaces, then removes the lab. It never raises.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from colopp.controller.local import processes_in_netns
from colopp.lab import Lab, Network, Node, netns_argv, plan_lab
from colopp.lab.plan import LabPlan
from colopp.polling import wait_until

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
VENV_BIN = REPO / ".venv" / "bin"
ARTIFACTS = REPO / "artifacts" / "ansible-test"
SSHD = Path("/usr/sbin/sshd")
HOSTS = (Node.HOST_A, Node.HOST_B)
GUEST_TAP = "tap-guest"
VM_NAME = "web-1"

_RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ansible_env(tmp: Path) -> dict[str, str]:
    """Environment for ansible-playbook / ansible-lint: this repo's config, private dirs."""
    env = dict(os.environ)
    env.update(
        PATH=f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
        ANSIBLE_CONFIG=str(ANSIBLE_DIR / "ansible.cfg"),
        ANSIBLE_HOME=str(tmp / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-local"),
        ANSIBLE_SSH_CONTROL_PATH_DIR=str(tmp / "cp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        PYTHONWARNINGS="ignore",  # ansible's own deprecations are not this suite's errors
    )
    return env


def recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP of an ansible-playbook run: host -> ok/changed/unreachable/failed."""
    counts = {}
    for line in output.splitlines():
        match = _RECAP.match(line.strip())
        if match:
            host, ok, changed, unreachable, failed = match.groups()
            counts[host] = {
                "ok": int(ok),
                "changed": int(changed),
                "unreachable": int(unreachable),
                "failed": int(failed),
            }
    return counts


@dataclass
class PlaybookRun:
    """One ansible-playbook run: its exit status, output, recap and duration."""

    returncode: int
    output: str
    recap: dict[str, dict[str, int]]
    seconds: float

    def tail(self, lines: int = 80) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


@dataclass
class AnsibleSite:
    """The lab, sshd on both hosts, and the inventory that points ansible at them."""

    prefix: str
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="clpans-")))
    plan: LabPlan | None = None
    lab: Lab | None = None
    sshd: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    api_port: int = 0
    runs: int = 0
    #: Fleet mode: both hosts and the controller run an etcd member (group colopp_etcd).
    fleet: bool = False

    # -- paths -----------------------------------------------------------------------------
    def root_of(self, host: str) -> Path:
        """The ``colopp_root`` of an inventory host (its private part of the filesystem)."""
        return self.tmp / host

    @property
    def inventory(self) -> Path:
        return self.tmp / "inventory.yml"

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"  # the playbook's default: HTTPS

    @property
    def api_ca(self) -> Path:
        """The CA the playbook made; it signs the API's certificate too."""
        return self.tmp / "secrets" / "pki" / "ca.pem"

    def api_token(self) -> str:
        return (self.tmp / "secrets" / "api.token").read_text().strip()

    def etcd_urls(self) -> list[str]:
        """The client URLs of the fleet's etcd members (fleet mode)."""
        assert self.plan is not None
        nodes = (*HOSTS, Node.CONTROLLER)
        return [f"http://{self.plan.address(n, Network.MANAGEMENT)}:2379" for n in nodes]

    def client_netns(self) -> str:
        assert self.plan is not None
        return self.plan.netns(Node.CLIENT)

    def guest_ip(self) -> str:
        assert self.plan is not None
        return str(self.plan.guest_address.ip)

    # -- building --------------------------------------------------------------------------
    def start(self) -> None:
        """Build the lab (waits for another lab on this host to go), start sshd, write the
        inventory. Raises on failure (the caller's teardown calls :meth:`close`)."""
        self.plan = plan_lab(self.prefix)
        self.lab = Lab.create(self.plan)
        ssh = self.tmp / "ssh"
        ssh.mkdir(mode=0o700)
        _keygen(ssh / "id_ed25519")
        (ssh / "authorized_keys").write_bytes((ssh / "id_ed25519.pub").read_bytes())
        known = []
        for node in HOSTS:
            address = str(self.plan.address(node, Network.MANAGEMENT))
            key = ssh / f"{node.value}_host_ed25519"
            _keygen(key)
            known.append(f"{address} {(key.with_suffix('.pub')).read_text().strip()}")
            self._start_sshd(node, address, key)
        (ssh / "known_hosts").write_text("\n".join(known) + "\n")
        for node in HOSTS:
            address = str(self.plan.address(node, Network.MANAGEMENT))
            wait_until(f"sshd on {node.value} ({address}:22)", lambda a=address: _ssh_banner(a), 20)
        self.api_port = free_port()
        self.inventory.write_text(json.dumps(self._inventory(), indent=2))

    def _start_sshd(self, node: Node, address: str, host_key: Path) -> None:
        assert self.plan is not None
        ssh = self.tmp / "ssh"
        config = ssh / f"sshd_{node.value}.conf"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {address}",
                    "Port 22",
                    f"HostKey {host_key}",
                    f"PidFile {ssh / f'sshd_{node.value}.pid'}",
                    f"AuthorizedKeysFile {ssh / 'authorized_keys'}",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "MaxSessions 50",
                    "MaxStartups 50",
                    "Subsystem sftp /usr/lib/openssh/sftp-server",
                    "",
                ]
            )
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        log = (ssh / f"sshd_{node.value}.log").open("wb")
        self.sshd[node.value] = subprocess.Popen(
            netns_argv(self.plan.netns(node), [str(SSHD), "-D", "-e", "-f", str(config)]),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()

    def _inventory(self) -> dict[str, Any]:
        assert self.plan is not None
        ssh = self.tmp / "ssh"
        hosts = {}
        for node in HOSTS:
            hosts[node.value] = {
                "ansible_host": str(self.plan.address(node, Network.MANAGEMENT)),
                "colopp_repl_ip": str(self.plan.address(node, Network.REPLICATION)),
                "colopp_root": str(self.root_of(node.value)),
                "colopp_guest_bridge": self.plan.tap(node).bridge,
                "colopp_guest_tap": GUEST_TAP,
            }
        inventory = {
            "all": {
                "vars": {
                    "ansible_user": "root",
                    "ansible_python_interpreter": "/usr/bin/python3",
                    "ansible_ssh_private_key_file": str(ssh / "id_ed25519"),
                    "ansible_ssh_common_args": (
                        f"-o UserKnownHostsFile={ssh / 'known_hosts'}"
                        " -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
                    ),
                    "ansible_remote_tmp": str(self.tmp / "remote-tmp"),
                    "colopp_wheelhouse": str(self.tmp / "wheelhouse"),
                    "colopp_secrets_dir": str(self.tmp / "secrets"),
                    "colopp_vm_name": VM_NAME,
                    "colopp_vm_dir": str(self.tmp / "vm"),
                    "colopp_vm_ip": self.plan.guest_address.with_prefixlen,
                    "colopp_vm_accel": "tcg",
                    "colopp_api_port": self.api_port,
                    # Every host's colopp_root differs here: name the controller's CA for all
                    # (the rolling waits ask the API from the controller host).
                    "colopp_api_ca_path": str(
                        self.root_of("controller") / "etc" / "colopp" / "tls" / "api-ca.pem"
                    ),
                    "colopp_api_agent_networks": [
                        str(self.plan.cable(Node.CONTROLLER, Network.MANAGEMENT).address.network)
                    ],
                },
                "children": {
                    "colopp_hosts": {"hosts": hosts},
                    "colopp_controller": {
                        "hosts": {
                            "controller": {
                                "ansible_connection": "local",
                                "colopp_root": str(self.root_of("controller")),
                            }
                        }
                    },
                },
            }
        }
        if self.fleet:
            controller = self.plan.address(Node.CONTROLLER, Network.MANAGEMENT)
            inventory["all"]["children"]["colopp_etcd"] = {
                "hosts": {
                    **{node.value: {} for node in HOSTS},
                    "controller": {"colopp_etcd_ip": str(controller)},
                }
            }
        return inventory

    # -- running ---------------------------------------------------------------------------
    def playbook(self, *args: str, timeout: float = 600) -> PlaybookRun:
        """Run ansible-playbook site.yml against the inventory (from ansible/); its log (with
        a timestamp per line) is kept in ``artifacts/ansible-test/run-N.log``."""
        self.runs += 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        env = ansible_env(self.tmp)
        env["ANSIBLE_LOG_PATH"] = str(ARTIFACTS / f"run-{self.runs}.log")
        with contextlib.suppress(FileNotFoundError):
            Path(env["ANSIBLE_LOG_PATH"]).unlink()
        started = time.monotonic()
        done = subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), "-i", str(self.inventory), "site.yml", *args],
            cwd=ANSIBLE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        output = done.stdout + done.stderr
        return PlaybookRun(done.returncode, output, recap(done.stdout), time.monotonic() - started)

    def api(self, token: str | None = None) -> httpx.Client:
        """A client of the deployed API over HTTPS, trusting the playbook's CA."""
        return httpx.Client(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {token or self.api_token()}"},
            verify=ssl.create_default_context(cafile=str(self.api_ca)),
            timeout=10,
        )

    # -- teardown --------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the protection, the API, the agents, sshd and the lab; never raises."""
        with contextlib.suppress(Exception):
            self._unprotect()
        for host in ("controller", *(n.value for n in HOSTS)):
            for pidfile in (self.root_of(host) / "run" / "colopp").glob("*.pid"):
                _stop_pidfile(pidfile, self.tmp)
        for proc in self.sshd.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
        if self.plan is not None:
            for netns in self.plan.namespaces:  # QEMU or agents the steps above missed
                for pid in processes_in_netns(netns):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        if self.lab is not None:
            with contextlib.suppress(Exception):
                self.lab.destroy()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _unprotect(self) -> None:
        if not self.api_port or not (self.tmp / "secrets" / "api.token").exists():
            return
        with self.api() as c:
            for p in c.get("/v1/protections").json()["protections"]:
                if not p["stopped"]:
                    c.delete(f"/v1/protections/{p['id']}", params={"stop": "true"})

            def all_stopped() -> bool:
                return all(p["stopped"] for p in c.get("/v1/protections").json()["protections"])

            wait_until("protections stopped", all_stopped, 120, period=1)


def _keygen(path: Path) -> None:
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "colopp-ansible-test",
            "-f",
            str(path),
        ],
        check=True,
        capture_output=True,
    )


def _ssh_banner(address: str) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=1) as s:
            return s.recv(16).startswith(b"SSH-")
    except OSError:
        return False


def _stop_pidfile(pidfile: Path, owned: Path) -> None:
    """SIGTERM the process of a pid file the playbook wrote, if it is ours (its launcher
    or argv names a path under ``owned``), wait for it, then SIGKILL."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return
    if str(owned) not in cmdline:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    try:
        wait_until(f"{pidfile.name} gone", lambda: not Path(f"/proc/{pid}").exists(), 30)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
