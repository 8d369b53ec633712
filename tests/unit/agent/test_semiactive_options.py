"""The semi-active secondary's options (issue 15, item 5): its quota (and the override for
measurements), and the lag bounds the comparator gets with and without pre-release."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from colopp.agent.comparator_process import (
    SEMIACTIVE_MAX_LAG_EARLY_MS,
    SEMIACTIVE_MAX_LAG_MS,
    SEMIACTIVE_PRERELEASE_MAX_LAG_MS,
    comparator_argv,
)
from colopp.agent.semiactive import QUOTA_ENV, SEMIACTIVE_QUOTA, semiactive_quota
from colopp.compare import CompareConfig
from colopp.compare.__main__ import options_from_args
from colopp.domain import ComparatorKind, ProtectionOptions, Role, SideSpec

OPTIONS = ProtectionOptions(comparator=ComparatorKind.COLOPP)
BASE = SideSpec(
    Role.PRIMARY,
    Path("/run/c"),
    "tap-x",
    Path("/run/c/disk.qcow2"),
    "198.18.1.10",
    "198.18.1.11",
    options=OPTIONS,
)


def config_of(**options: object) -> CompareConfig:
    spec = dataclasses.replace(BASE, options=dataclasses.replace(OPTIONS, **options))
    argv = comparator_argv(spec, 2000, python="py")
    return options_from_args(argv[argv.index("colopp.compare") + 1 :]).config


def test_with_pre_release_early_answers_may_lag_longer_than_writes_wait() -> None:
    config = config_of(semiactive=True, prerelease="auto", read_prefixes=("/kv/",))
    assert config.max_lag == SEMIACTIVE_PRERELEASE_MAX_LAG_MS / 1000
    assert config.max_lag_early == SEMIACTIVE_MAX_LAG_EARLY_MS / 1000
    assert config.max_lag < SEMIACTIVE_MAX_LAG_MS / 1000 < config.max_lag_early


def test_without_pre_release_every_answer_has_the_one_bound() -> None:
    config = config_of(semiactive=True)
    assert (config.max_lag, config.max_lag_early) == (SEMIACTIVE_MAX_LAG_MS / 1000, None)
    plain = config_of()
    assert (plain.max_lag, plain.max_lag_early) == (None, None)
    assert config_of(prerelease="auto", read_prefixes=("/kv/",)).max_lag is None


def test_the_quota_and_its_override(caplog: pytest.LogCaptureFixture) -> None:
    assert SEMIACTIVE_QUOTA == 0.5
    assert semiactive_quota({}) == SEMIACTIVE_QUOTA
    assert semiactive_quota({QUOTA_ENV: "0.25"}) == 0.25
    with caplog.at_level(logging.WARNING):
        for bad in ("", "x", "0", "-1", "nan", "100"):
            assert semiactive_quota({QUOTA_ENV: bad}) == SEMIACTIVE_QUOTA
    assert caplog.text.count("is not a CPU quota") == 6
