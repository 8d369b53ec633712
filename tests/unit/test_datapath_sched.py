"""The data-path helpers' scheduling policy (``colopp/datapath_sched.py``)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from colopp.datapath_sched import (
    SCHED_ENV,
    apply_policy,
    restore_default_policy,
    wanted_policy,
)
from colopp.errors import ConfigError


def test_batch_is_the_default_and_normal_keeps_the_policy() -> None:
    calls: list[tuple[int, int]] = []

    def record(pid: int, policy: int, param: os.sched_param) -> None:
        calls.append((pid, policy))

    assert apply_policy({}, record) == "batch"
    assert calls == [(0, os.SCHED_BATCH)]
    assert apply_policy({SCHED_ENV: "normal"}, record) == "normal"
    assert len(calls) == 1


@pytest.mark.parametrize("value", ["", "fifo", "BATCH", "batch "])
def test_anything_else_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=SCHED_ENV):
        wanted_policy({SCHED_ENV: value})


def test_a_refusing_kernel_leaves_the_default() -> None:
    def refuse(pid: int, policy: int, param: os.sched_param) -> None:
        raise PermissionError(1, "Operation not permitted")

    assert apply_policy({}, refuse) == "normal"


def test_a_real_process_and_its_children_run_as_batch() -> None:
    code = (
        "import os, subprocess, sys\n"
        "from colopp.datapath_sched import apply_policy\n"
        "apply_policy()\n"
        "child = subprocess.run([sys.executable, '-c', "
        "'import os; print(os.sched_getscheduler(0))'], capture_output=True, text=True)\n"
        "print(os.sched_getscheduler(0), child.stdout.strip())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != SCHED_ENV}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split() == [str(os.SCHED_BATCH)] * 2


def test_the_default_policy_comes_back_on_promotion() -> None:
    calls: list[int] = []

    def record(pid: int, policy: int, param: os.sched_param) -> None:
        calls.append(policy)

    def refuse(pid: int, policy: int, param: os.sched_param) -> None:
        raise OSError(22, "Invalid argument")

    assert restore_default_policy(record) and calls == [os.SCHED_OTHER]
    assert not restore_default_policy(refuse)
