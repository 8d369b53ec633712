"""Load on the Debian guest's own services during the demo, across the kill.

``redis-benchmark`` (SET and GET, runs one after another) against redis on 6379 and one
long ``wrk`` against nginx's ``/64k.bin`` on 8080, both from the client namespace and both
Debian's programs (``redis-tools``, ``wrk``). They start before the kill and stop once the
pair is protected again: their errors are the guest's services' errors across the
failover. Parsing their output is pure (:func:`parse_wrk`, :func:`parse_redis_csv`).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Any

from colopp.errors import ColoppError, ConfigError
from colopp.lab import LabPlan, Node, netns_argv
from colopp.process import run_tool

REDIS_PORT = 6379
NGINX_PORT = 8080
#: Requests per redis-benchmark run (each of SET and GET); small so a run spans seconds.
REDIS_RUN_REQUESTS = 400
WRK_TIMEOUT_S = 30  # a request slower than this counts as a wrk timeout error

_WRK_REQUESTS = re.compile(r"^\s*(\d+) requests in ", re.M)
_WRK_SOCKET = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.M
)
_WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)", re.M)
_CSV_ROW = re.compile(r'^"([A-Z_ ]+)","([0-9.]+)"', re.M)


def wrk_argv(host: str, connections: int = 2, duration_s: int = 3600) -> list[str]:
    """One wrk thread, ``connections`` keep-alive connections, until SIGINT."""
    return [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration_s}s",
        "--timeout",
        f"{WRK_TIMEOUT_S}s",
        f"http://{host}:{NGINX_PORT}/64k.bin",
    ]


def redis_benchmark_argv(host: str, clients: int = 2) -> list[str]:
    """One redis-benchmark run of SET and GET; CSV rows on stdout."""
    return [
        "redis-benchmark",
        "-h",
        host,
        "-p",
        str(REDIS_PORT),
        "-c",
        str(clients),
        "-n",
        str(REDIS_RUN_REQUESTS),
        "-t",
        "set,get",
        "-e",
        "--csv",
    ]


def parse_wrk(text: str) -> dict[str, int]:
    """wrk's summary: requests completed and errors (socket errors + non-2xx/3xx).

    Raises:
        ConfigError: no summary in ``text`` (wrk did not run to its report).
    """
    found = _WRK_REQUESTS.search(text)
    if found is None:
        raise ConfigError(f"no wrk summary in its output: {text[-300:]!r}")
    socket = _WRK_SOCKET.search(text)
    non_2xx = _WRK_NON_2XX.search(text)
    errors = sum(int(n) for n in socket.groups()) if socket else 0
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return {"requests": int(found.group(1)), "errors": errors}


def parse_redis_csv(text: str) -> dict[str, float]:
    """redis-benchmark's ``--csv`` rows: test name -> requests per second."""
    return {name: float(rps) for name, rps in _CSV_ROW.findall(text)}


@dataclass
class RedisLoop:
    """redis-benchmark runs back to back until stopped; a failed run is an error."""

    argv: list[str]
    runs: int = 0
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stopping.is_set():
            self.runs += 1
            try:
                out = run_tool(self.argv, ColoppError, timeout=300, name="redis-benchmark")
            except ColoppError as exc:  # exited non-zero (a lost connection) or hung
                self.errors.append(f"run {self.runs}: {exc}")
                continue
            rows = parse_redis_csv(out)
            bad = [line for line in out.splitlines() if "error" in line.lower()]
            if bad or set(rows) != {"SET", "GET"}:
                self.errors.append(f"run {self.runs}: {(bad or [out.strip()[-200:]])[0]}")
                continue
            self.requests += 2 * REDIS_RUN_REQUESTS
            self.rps.extend(rows.values())


class ServiceLoad:
    """redis-benchmark and wrk from the client namespace against the guest's services."""

    def __init__(self, plan: LabPlan) -> None:
        missing = [tool for tool in ("redis-benchmark", "wrk") if shutil.which(tool) is None]
        if missing:
            raise ConfigError(
                f"{' and '.join(missing)} not found: apt-get install redis-tools wrk"
                " (scripts/setup.sh installs them)"
            )
        netns, host = plan.netns(Node.CLIENT), str(plan.guest_address.ip)
        self.wrk = subprocess.Popen(
            netns_argv(netns, wrk_argv(host)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.redis = RedisLoop(netns_argv(netns, redis_benchmark_argv(host)))
        self._thread = threading.Thread(target=self.redis.run, daemon=True)
        self._thread.start()

    def finish(self, timeout: float = 300) -> dict[str, Any]:
        """Stop both (wrk on SIGINT prints its report); their figures for the summary.

        Raises:
            ConfigError: wrk gave no report.
        """
        self.redis.stopping.set()
        if self.wrk.poll() is None:
            self.wrk.send_signal(signal.SIGINT)
        out, _ = self.wrk.communicate(timeout=timeout)
        self._thread.join(timeout)
        wrk = parse_wrk(out)
        rps = sorted(self.redis.rps)
        return {
            "redis_benchmark_requests": self.redis.requests,
            "redis_benchmark_errors": len(self.redis.errors),
            "redis_benchmark_rps_p50": rps[len(rps) // 2] if rps else None,
            "redis_benchmark_error_lines": self.redis.errors[:5],
            "wrk_requests": wrk["requests"],
            "wrk_errors": wrk["errors"],
        }

    def kill(self) -> None:
        """Make sure both are gone (teardown)."""
        self.redis.stopping.set()
        if self.wrk.poll() is None:
            self.wrk.kill()
            self.wrk.communicate()
