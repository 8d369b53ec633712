"""Translator control requests and splice steps (pure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from colopp.colo.sequence import GENERIC_ERROR
from colopp.errors import QmpError
from colopp.rewrite.control import handle_request
from colopp.rewrite.splice import FILTERS, splice_steps, unsplice_steps
from colopp.rewrite.table import OffsetTable

ROW = {"guest": [1, 80], "peer": [2, 4000], "delta": 5, "last_seen": 0.0}


def _ask(table: OffsetTable, request: object) -> tuple[OffsetTable, dict[str, object], bool]:
    table, reply, changed = handle_request(table, json.dumps(request).encode(), 10.0)
    assert reply.endswith(b"\n")
    return table, json.loads(reply), changed


def test_set_snapshot_load_merge() -> None:
    table, reply, changed = _ask(
        OffsetTable(), {"op": "set", **{k: ROW[k] for k in ("guest", "peer", "delta")}}
    )
    assert reply == {"ok": True, "entries": 1} and changed
    assert table.delta((1, 80, 2, 4000)) == 5
    table, reply, changed = _ask(table, {"op": "snapshot"})
    assert not changed and reply["ok"] and len(reply["rows"]) == 1  # type: ignore[arg-type]
    other = {**ROW, "peer": [3, 4001]}
    table, reply, _ = _ask(table, {"op": "merge", "rows": [other]})
    assert len(table) == 2
    table, reply, _ = _ask(table, {"op": "load", "rows": [other]})
    assert list(table) == [(1, 80, 3, 4001)]


@pytest.mark.parametrize(
    "request_",
    [
        [],
        {"op": "nope"},
        {"op": "set", "guest": [1, 80], "peer": [2, 4000], "delta": 0},
        {"op": "set", "guest": [1, 80], "peer": [2, 99999], "delta": 3},
        {"op": "load", "rows": "x"},
        {"op": "merge", "rows": [{"guest": [1, 80]}]},
    ],
)
def test_bad_requests_change_nothing(request_: object) -> None:
    table = OffsetTable.from_snapshot([ROW])
    after, reply, changed = _ask(table, request_)
    assert reply["ok"] is False and reply["error"]
    assert not changed and after.snapshot() == table.snapshot()


def test_not_json_is_a_clear_error() -> None:
    _table, reply, changed = handle_request(OffsetTable(), b"{nope\n", 0.0)
    assert json.loads(reply)["ok"] is False and not changed


def test_splice_orders_filters_so_injected_frames_never_loop(tmp_path: Path) -> None:
    steps = splice_steps(tmp_path, before="rew0")
    adds = [s.arguments for s in steps if s.command == "object-add"]
    assert [a["id"] for a in adds] == ["xo1", "xo0", "xi0", "xi1"]
    assert all(a["position"] == "id=rew0" and a["insert"] == "before" for a in adds)
    # rx goes backward through the chain: the injector (indev) must come before the diverter.
    rx = [fid for fid, queue, _ in FILTERS if queue == "rx"]
    assert rx == ["xo1", "xo0"]
    chardevs = [s.arguments for s in steps if s.command == "chardev-add"]
    assert all(str(tmp_path) in c["backend"]["data"]["addr"]["data"]["path"] for c in chardevs)
    tail = splice_steps(tmp_path, before=None)
    assert all("position" not in s.arguments for s in tail if s.command == "object-add")
    undo = [s.arguments["id"] for s in unsplice_steps()]
    assert undo[:2] == ["xo0", "xi0"] and len(undo) == 8


def test_splice_steps_tolerate_duplicates_and_absences_by_error_class(tmp_path: Path) -> None:
    # QmpStep matches QEMU's error class and the command, never message text.
    for step in splice_steps(tmp_path, before="rew0"):
        assert step.tolerates(QmpError(step.command, "Duplicate ID", GENERIC_ERROR))
        assert not step.tolerates(QmpError(step.command, "lost", None))
    for step in unsplice_steps():
        assert step.tolerates(QmpError(step.command, "not found", GENERIC_ERROR))
