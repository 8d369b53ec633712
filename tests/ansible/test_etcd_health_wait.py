"""The colopp_etcd role's health wait against an etcd-like /health: etcd 3.4 answers it
as ``text/plain``, so the wait must read the body, not Ansible's parsed JSON (the wait
never passed on the lab before)."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from ansible_harness import ANSIBLE_DIR, VENV_BIN, ansible_env

TASKS = ANSIBLE_DIR / "roles" / "colopp_etcd" / "tasks" / "wait_health.yml"


def health_server(body: bytes) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")  # as etcd 3.4
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def tmp() -> Iterator[Path]:
    if not (VENV_BIN / "ansible-playbook").exists() or shutil.which("python3") is None:
        pytest.skip("ansible-playbook is not in .venv (scripts/setup.sh installs it)")
    with tempfile.TemporaryDirectory(prefix="clpeth-") as made:
        yield Path(made)


def wait(tmp: Path, body: bytes) -> subprocess.CompletedProcess[str]:
    server = health_server(body)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    playbook = tmp / "wait.yml"
    playbook.write_text(
        f"""- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: /usr/bin/python3
    colopp_etcd_ip: 127.0.0.1
    colopp_etcd_client_port: {server.server_address[1]}
    colopp_etcd_start_timeout: 2
  tasks:
    - ansible.builtin.include_tasks: {TASKS}
"""
    )
    try:
        return subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", str(playbook)],
            env=ansible_env(tmp),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        server.shutdown()
        server.server_close()


def test_a_healthy_member_answering_text_plain_passes(tmp: Path) -> None:
    run = wait(tmp, b'{"health":"true"}')
    assert run.returncode == 0, run.stdout[-2000:]


def test_an_unhealthy_member_keeps_the_wait_failing(tmp: Path) -> None:
    run = wait(tmp, b'{"health":"false","reason":"RAFT NO LEADER"}')
    assert run.returncode != 0
