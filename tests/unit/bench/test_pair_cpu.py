"""bench.pair's per-CPU account of work outside the lab (pure part)."""

from __future__ import annotations

from bench.pair_cpu import CpuSample, outside_share


def test_outside_is_busy_minus_the_lab_and_the_client_program() -> None:
    before = CpuSample({0: 100.0, 1: 200.0}, lab_pids={0: {10: 50.0}, 1: {20: 5.0}}, children_s=1.0)
    after = CpuSample(
        {0: 109.0, 1: 210.0},
        lab_pids={0: {10: 57.0, 11: 99.0}, 1: {20: 6.0}},  # 11 appeared: not counted
        children_s=5.0,  # the client program used 4 s on CPU 1
        client_cpus=(1,),
    )
    assert outside_share(before, after, 10.0) == {"cpu0": 0.2, "cpu1": 0.5}


def test_no_plan_or_no_window_gives_nothing() -> None:
    assert outside_share(CpuSample(), CpuSample(), 10.0) == {}
    assert outside_share(CpuSample({0: 1.0}), CpuSample({0: 2.0}), 0.0) == {}


def test_no_wait_share_counts_early_and_matched_on_arrival() -> None:
    from bench.pair_figures import no_wait_share

    before = {"matched_on_arrival": 10, "pre_release": {"read_requests": 100, "granted": {}}}
    after = {
        "matched_on_arrival": 70,
        "pre_release": {"read_requests": 190, "write_requests": 10, "granted": {"http_read": 20}},
    }
    assert no_wait_share(before, after) == 0.8  # (20 + 60) / (90 + 10)
    assert no_wait_share({}, {}) == 0.0


def test_process_role_from_cmdline() -> None:
    from bench.pair_cpu import process_role

    qemu = b"/r/lib64/ld-linux-x86-64.so.2\0--library-path\0/r/lib\0/r/usr/bin/qemu-system-x86_64\0"
    assert process_role(qemu) == "qemu"
    assert process_role(b"/v/bin/python\0-m\0colopp.compare\0--primary-in\0x\0") == "comparator"
    assert process_role(b"/v/bin/python\0-m\0colopp.ingress\0") == "relay"
    assert process_role(b"/v/bin/python\0-m\0colopp.mirror\0--from\0") == "mirror"
    assert process_role(b"/v/bin/python\0-m\0colopp.agent\0--host\0hosta\0") == "agent"
    assert process_role(b"sleep\0001\0") == "other"


def test_role_ms_per_req_splits_each_host() -> None:
    from bench.pair_figures import Sample, role_ms_per_req

    before = Sample(0.0, 0, {}, role_cpu_s={"hosta": {"qemu": 1.0, "comparator": 0.5}})
    after = Sample(
        10.0, 0, {}, role_cpu_s={"hosta": {"qemu": 3.0, "comparator": 0.7, "relay": 0.1}}
    )
    split = role_ms_per_req(before, after, 100)
    assert split == {"hosta": {"comparator": 2.0, "qemu": 20.0, "relay": 1.0}}
    assert role_ms_per_req(before, after, 0) == {}
