"""Address syntax of the comparator's command line."""

from __future__ import annotations

import pytest

from colopp.compare.addresses import Endpoint, parse_endpoint
from colopp.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unix:/run/colopp/compare0.sock", Endpoint(False, path="/run/colopp/compare0.sock")),
        ("listen:unix:/run/red1.sock", Endpoint(True, path="/run/red1.sock")),
        ("tcp:198.18.0.10:9003", Endpoint(False, host="198.18.0.10", port=9003)),
        ("listen:tcp:0.0.0.0:9004", Endpoint(True, host="0.0.0.0", port=9004)),
        ("listen:tcp:[::1]:9004", Endpoint(True, host="::1", port=9004)),
    ],
)
def test_parse(text: str, expected: Endpoint) -> None:
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize("text", ["", "unix:", "tcp:host", "tcp::1", "tcp:h:99999", "udp:h:1"])
def test_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_endpoint(text)


def test_str_round_trips() -> None:
    for text in ("listen:unix:/a", "tcp:h:1"):
        assert str(parse_endpoint(text)) == text
