"""A store with one protection and a live runner, scraped in-process (``/metrics``'s body)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from colopp_api.config import Settings
from colopp_api.db.store import Store, make_engine, migrate
from colopp_api.live.runner import ProtectionRunner
from colopp_api.prom import exposition

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Manager:
    """What the collector reads of a ProtectionManager."""

    def __init__(self) -> None:
        self.runners: dict[str, ProtectionRunner] = {}


def scrape(manager: Any, store: Store) -> Series:
    """Every sample of the exposition: (name, sorted labels) -> value."""
    text = exposition(manager, store).decode()
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            series[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return series


def value(series: Series, name: str, **labels: str) -> float:
    return series[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Manager, Store, ProtectionRunner]]:
    """A protection ``p1`` on hosta (primary) and hostb, with a runner and no pair."""
    url = f"sqlite:///{tmp_path / 'api.db'}"
    engine = make_engine(url)
    migrate(engine, url)
    store = Store(engine)
    settings = Settings(state_dir=tmp_path, database_url=url, write_token="w")
    row = store.add_protection(
        id="p1",
        name="web",
        placement="hosts",
        options={},
        state="protected",
        reason=None,
        runtime={},
    )
    store.update_protection("p1", primary_host="hosta", secondary_host="hostb")
    row = store.protection("p1") or row
    runner = ProtectionRunner(row, store, settings)
    runner.addresses = {"hosta": ("127.0.0.1", 1), "hostb": ("127.0.0.1", 2)}
    manager = Manager()
    manager.runners["p1"] = runner
    yield manager, store, runner
    engine.dispose()
