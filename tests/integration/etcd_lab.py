"""The etcd cluster helpers of :mod:`colopp.arbiter.cluster`, skipping when etcd is missing."""

from __future__ import annotations

import shutil

import pytest

from colopp.arbiter.cluster import (
    SUBNET,
    EtcdCluster,
    Events,
    Member,
    cut,
    delete_netns_lab,
    free_port,
    make_netns_lab,
)


def need_etcd() -> None:
    if shutil.which("etcd") is None:
        pytest.skip("etcd-server is not installed (scripts/setup.sh installs it)")


__all__ = [
    "SUBNET",
    "EtcdCluster",
    "Events",
    "Member",
    "cut",
    "delete_netns_lab",
    "free_port",
    "make_netns_lab",
    "need_etcd",
]
