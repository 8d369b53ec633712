"""Fleet mode: two API replicas sharing PostgreSQL elect a leader on a real 3-member etcd;
the follower refuses changes and leads within 5 s of the leader's SIGKILL."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from colopp.errors import ConfigError
from colopp_api.config import Settings
from tests.api.conftest import ApiServer, Postgres, wait_until
from tests.api.test_api_hostile import hosts_body
from tests.integration.etcd_lab import EtcdCluster, Member, free_port, need_etcd

TAKEOVER_S = 5.0


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    need_etcd()
    members = [Member(f"m{i}", "127.0.0.1", free_port(), free_port()) for i in range(3)]
    cluster = EtcdCluster(members, tmp_path / "etcd")
    (tmp_path / "etcd").mkdir()
    cluster.start()
    yield cluster
    cluster.stop()


def role(api: ApiServer) -> str | None:
    try:
        return httpx.get(f"{api.url}/healthz", timeout=1).json().get("role")
    except (httpx.HTTPError, ValueError):
        return None


def test_the_follower_replica_takes_supervision_over_within_5s(
    etcd: EtcdCluster, postgres: Postgres, tmp_path: Path
) -> None:
    database = postgres.new_database()
    urls = ",".join(m.client_url for m in etcd.members)
    r1 = ApiServer(tmp_path / "r1", database, COLOPP_ETCD_ENDPOINTS=urls, COLOPP_API_REPLICA="r1")
    r2 = ApiServer(tmp_path / "r2", database, COLOPP_ETCD_ENDPOINTS=urls, COLOPP_API_REPLICA="r2")
    try:
        r1.start()
        wait_until("r1 leads", lambda: role(r1) == "leader", 60)
        r2.start()
        assert role(r2) == "follower"
        with r2.client() as c:
            refused = c.post("/v1/protections", json=hosts_body("web", free_port()))
            assert refused.status_code == 409
            assert "does not lead" in refused.json()["detail"]
        killed_at = time.monotonic()
        r1.kill(signal.SIGKILL)  # no revoke: the lease must expire at etcd
        wait_until("r2 leads", lambda: role(r2) == "leader", 30, period=0.05)
        takeover = time.monotonic() - killed_at
    finally:
        r1.kill()
        r2.kill()
    print(f"controller takeover_s {takeover:.2f}")
    assert takeover <= TAKEOVER_S
    assert "replica r2 leads" in r2.log.read_text()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        (
            "http://198.18.0.1:2379, http://198.18.0.2:2379",
            ("http://198.18.0.1:2379", "http://198.18.0.2:2379"),
        ),
    ],
)
def test_etcd_endpoints_setting(tmp_path: Path, value: str, expected: tuple[str, ...]) -> None:
    env = {"COLOPP_API_STATE_DIR": str(tmp_path), "COLOPP_ETCD_ENDPOINTS": value}
    settings = Settings.from_env(env)
    assert settings.etcd_endpoints == expected
    assert settings.replica  # host:pid by default


@pytest.mark.parametrize("value", ["198.18.0.1:2379", "file:///etc/passwd", "http://a b"])
def test_a_bad_etcd_endpoint_is_refused_naming_the_variable(tmp_path: Path, value: str) -> None:
    env = {"COLOPP_API_STATE_DIR": str(tmp_path), "COLOPP_ETCD_ENDPOINTS": value}
    with pytest.raises(ConfigError, match="COLOPP_ETCD_ENDPOINTS: .*must be an http"):
        Settings.from_env(env)
