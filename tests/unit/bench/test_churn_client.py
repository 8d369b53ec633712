"""bench.churn_client against an in-process HTTP key-value server: answers checked, a wrong
answer or a silent server breaks the connection, acknowledged writes are read back."""

from __future__ import annotations

import argparse
import asyncio
import io
import threading
from collections.abc import Iterator

import pytest

from bench.churn_client import run
from bench.cpu_sample import TICK, CpuSampler, Sample


class KvServer:
    """PUT/GET /kv/KEY over keep-alive HTTP/1.1, in its own thread and loop (the client
    reads writes back with blocking http.client)."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode  # ok | wrong (GETs answer other bytes) | silent (never answers)
        self.store: dict[str, bytes] = {}
        self.port = 0
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._session, "127.0.0.1"))
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()
        server.close()
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                method, path, _ = line.decode().split()
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                if self.mode == "silent":
                    continue
                key = path.removeprefix("/kv/")
                if method == "PUT":
                    self.store[key], out = body, b"ok"
                else:
                    out = self.store.get(key, b"")
                    if self.mode == "wrong":
                        out = b"other"
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(out)}\r\n\r\n"
                writer.write(head.encode() + out)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    def __enter__(self) -> KvServer:
        self.thread.start()
        assert self.ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def no_stdin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # EOF: stop opening at once
    yield


def _args(port: int, timeout: float = 2.0) -> argparse.Namespace:
    return argparse.Namespace(
        target=f"127.0.0.1:{port}",
        open_every=0.01,
        lifetime=0.3,
        interval=0.05,
        timeout=timeout,
        write_every=2,
        idle_silence=0.1,
        pacing="fixed",
    )


@pytest.mark.usefixtures("no_stdin")
def test_a_healthy_server_breaks_nothing_and_keeps_every_write() -> None:
    with KvServer() as server:
        summary = asyncio.run(run(_args(server.port)))
    assert summary["connections_opened"] == 1
    assert summary["connections_broken"] == 0
    assert summary["requests_ok"] >= 4
    assert summary["writes_acked"] >= 2 and summary["writes_lost"] == 0
    assert summary["latency_ms"]["p50"] is not None


@pytest.mark.usefixtures("no_stdin")
def test_a_wrong_answer_breaks_the_connection() -> None:
    with KvServer("wrong") as server:
        summary = asyncio.run(run(_args(server.port)))
    assert summary["connections_broken"] == 1
    assert "b'other'" in summary["errors"][0]
    assert summary["writes_acked"] == 1
    assert summary["writes_lost"] == 1  # read back as b"other": counted as lost


@pytest.mark.usefixtures("no_stdin")
def test_a_silent_server_is_a_broken_connection() -> None:
    with KvServer("silent") as server:
        summary = asyncio.run(run(_args(server.port, timeout=0.3)))
    assert summary["connections_broken"] == 1
    assert "not answered" in summary["errors"][0]
    assert summary["writes_acked"] == 0


def test_cpu_summary_counts_only_processes_alive_in_both_samples() -> None:
    sampler = CpuSampler(lambda _cmdline: None)
    sampler.samples = [
        Sample(0.0, (0, 200), {1: ("qemu", 0), 2: ("client", 50)}, {10: 0}, {10: 0}),
        Sample(
            1.0,
            (100, 400),
            {1: ("qemu", TICK // 2), 3: ("client", 999)},
            {10: TICK * 4 // 10},
            {10: 0},
        ),
    ]
    summary = sampler.summary()
    assert summary["host_busy_share"] == 0.5
    assert summary["cores_mean"]["qemu"] == pytest.approx(0.5, abs=0.05)
    assert "client" not in summary["cores_mean"]  # pid 2 exited, pid 3 is new
    assert summary["cores_mean"]["busiest_vcpu"] == pytest.approx(0.4, abs=0.05)
