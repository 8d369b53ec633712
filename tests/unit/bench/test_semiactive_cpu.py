"""bench.semiactive_cpu's pure parts: naming lab processes, per-thread deltas, summaries."""

from __future__ import annotations

from bench.semiactive_cpu import interval, kind_of, summarize


def test_lab_processes_are_named_by_what_they_run() -> None:
    assert kind_of(["/rt/ld-linux.so", "/rt/usr/bin/qemu-system-x86_64", "-name", "x"]) == "qemu"
    assert kind_of(["python", "-m", "colopp.ingress", "--tap", "t"]) == "ingress"
    assert kind_of(["python", "-m", "colopp.agent", "--host", "hostb"]) == "agent"
    assert kind_of(["/usr/bin/wrk", "-t1"]) == "wrk"
    assert kind_of([]) == "?"


def test_only_threads_seen_at_both_ends_count() -> None:
    before = {(1, 1): ("qemu", "CPU 0/TCG", 1.0), (1, 2): ("qemu", "worker", 0.5)}
    after = {
        (1, 1): ("qemu", "CPU 0/TCG", 1.4),
        (1, 2): ("qemu", "worker", 0.5),  # idle: left out
        (1, 3): ("qemu", "worker", 9.0),  # new: its past is not this interval's
        (2, 2): ("ingress", "python", 0.0),
    }
    assert interval(before, after) == {"qemu/CPU 0/TCG": 0.4}


def test_a_summary_is_ms_per_request_within_the_window() -> None:
    rows = [
        {"t": 10.0, "cpu_s": {"qemu/CPU 0/TCG": 9.0}},  # before the window
        {"t": 12.0, "cpu_s": {"qemu/CPU 0/TCG": 0.2, "ingress/python": 0.1}},
        {"t": 14.0, "cpu_s": {"qemu/CPU 0/TCG": 0.2, "agent/python": 0.02}},
    ]
    assert summarize(rows, 11.0, 14.0, 200) == {
        "qemu/CPU 0/TCG": 2.0,
        "ingress": 0.5,
        "agent": 0.1,
        "total": 2.6,
    }
    assert summarize(rows, 11.0, 14.0, 0) == {}
