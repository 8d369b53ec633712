"""The playbook's fleet mode over SSH: the colopp_etcd group (both lab hosts, each in its
network namespace, and the controller) runs a 3-member etcd from Debian's etcd-server, the
API campaigns there and leads, and the VM is protected through the leader."""

from __future__ import annotations

import os
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ansible_harness import AnsibleSite

from colopp.qemu.runtime import DEFAULT_ROOT

# ~5 min (a full playbook run in the fleet mode and one protected VM): out of CI's 45-minute
# budget, run with `pytest -m slow tests/ansible/test_etcd_role.py` (README, "Fleet").
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PREFIX = "clpetc"


@pytest.fixture
def site() -> Iterator[AnsibleSite]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("the playbook test needs root and iproute2 (network namespaces)")
    if not Path("/usr/sbin/sshd").exists() or shutil.which("etcd") is None:
        pytest.skip("needs /usr/sbin/sshd and etcd (scripts/setup.sh installs both)")
    if not (DEFAULT_ROOT / "usr/bin/qemu-system-x86_64").exists():
        pytest.skip(f"no QEMU runtime at {DEFAULT_ROOT}: run `colopp qemu install`")
    made = AnsibleSite(PREFIX, fleet=True)
    try:
        made.start()
        yield made
    finally:
        made.close()


def test_the_playbook_deploys_etcd_and_the_api_leads_on_it(site: AnsibleSite) -> None:
    run = site.playbook()
    assert run.returncode == 0, run.tail()
    members = site.etcd_urls()
    assert len(members) == 3
    for url in members:
        assert httpx.get(f"{url}/health", timeout=5).json() == {"health": "true"}
    listed = httpx.post(f"{members[0]}/v3/cluster/member/list", json={}, timeout=5).json()
    assert len(listed["members"]) == 3
    trusted = ssl.create_default_context(cafile=str(site.api_ca))  # the API serves HTTPS
    health = httpx.get(f"{site.api_url}/healthz", verify=trusted, timeout=5).json()
    assert health["role"] == "leader"
    with site.api() as api:
        (protection,) = api.get("/v1/protections").json()["protections"]
    assert protection["state"] == "protected"
    print(f"first run {run.seconds:.0f}s")
