"""``colopp serve`` settings (issue #13 item 14): every COLOPP_API_* value is validated,
a bad one is a one-line message naming the variable and exit status 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from colopp.errors import ConfigError
from colopp_api.config import Settings


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("COLOPP_API_SAMPLE_PERIOD", "abc", "valid number"),
        ("COLOPP_API_SAMPLE_PERIOD", "0", "greater than 0"),
        ("COLOPP_API_SAMPLE_PERIOD", "inf", "finite"),
        ("COLOPP_API_MAX_BODY", "1MiB", "valid integer"),
        ("COLOPP_API_MAX_BODY", "10", "greater than or equal"),
        ("COLOPP_API_LAB", "maybe", "boolean"),
        ("COLOPP_API_LAB_PREFIX", "Bad_Prefix", "lab prefix"),
        ("COLOPP_API_AGENT_NETWORKS", "10.0.0.1/8", "host bits"),
        ("COLOPP_API_AGENT_NETWORKS", "not-a-net", "not-a-net"),
        ("COLOPP_DATABASE_URL", ":::", "not a database URL"),
        ("COLOPP_QEMU_ROOT", "relative/root", "absolute path"),
        ("COLOPP_AGENT_TOKEN_FILE", "token", "absolute path"),
        ("COLOPP_API_STATE_DIR", "state", "absolute path"),
    ],
)
def test_a_bad_setting_is_a_clear_message_and_exit_2(
    tmp_path: Path, name: str, value: str, needle: str
) -> None:
    env = {
        **os.environ,
        "COLOPP_API_STATE_DIR": str(tmp_path),
        "COLOPP_API_TOKEN": "t",
        name: value,
    }
    result = subprocess.run(
        [sys.executable, "-m", "colopp_api", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert name in result.stderr and needle in result.stderr, result.stderr


def test_a_bad_port_and_an_unreachable_database_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "COLOPP_API_STATE_DIR": str(tmp_path), "COLOPP_API_TOKEN": "t"}
    argv = [sys.executable, "-m", "colopp_api", "--port"]
    bad_port = subprocess.run(
        [*argv, "70000"], env=env, capture_output=True, text=True, check=False
    )
    assert bad_port.returncode == 2 and "70000" in bad_port.stderr
    env["COLOPP_DATABASE_URL"] = f"postgresql+psycopg://nobody@/x?host={tmp_path}/none"
    no_db = subprocess.run([*argv, "1"], env=env, capture_output=True, text=True, check=False)
    assert no_db.returncode == 2 and "COLOPP_DATABASE_URL: cannot connect" in no_db.stderr
    assert "Traceback" not in no_db.stderr


def test_good_settings_and_empty_values(tmp_path: Path) -> None:
    got = Settings.from_env(
        {
            "COLOPP_API_STATE_DIR": str(tmp_path),
            "COLOPP_API_TOKEN": "w",
            "COLOPP_API_SAMPLE_PERIOD": "0.5",
            "COLOPP_API_MAX_BODY": "",  # empty: the default
            "COLOPP_API_LAB": "0",
            "COLOPP_API_AGENT_NETWORKS": "127.0.0.0/8, 198.18.0.0/15",
        }
    )
    assert got.sample_period == 0.5 and got.max_body == 1 << 20 and got.lab_enabled is False
    assert [str(n) for n in got.agent_networks] == ["127.0.0.0/8", "198.18.0.0/15"]
    assert got.database_url == f"sqlite:///{tmp_path / 'colopp.db'}"
    with pytest.raises(ConfigError, match="COLOPP_API_SAMPLE_PERIOD"):
        Settings.from_env({"COLOPP_API_STATE_DIR": str(tmp_path), "COLOPP_API_SAMPLE_PERIOD": "x"})
