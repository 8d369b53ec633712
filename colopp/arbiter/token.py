"""Fencing tokens on the agent's side (pure).

A command about a protection carries the revision of the key that gave its sender the
right to serve. Revisions only grow in etcd, so a newer holder always has a larger token.
An agent remembers the largest token it has seen per protection and refuses anything
smaller: a stale primary (paused past its lease, then waking) cannot command anyone.
"""

from __future__ import annotations

from colopp.errors import ConfigError, StaleToken


class TokenGate:
    """The newest fencing token seen per protection."""

    def __init__(self) -> None:
        self._newest: dict[str, int] = {}

    def admit(self, protection: str, token: object) -> None:
        """Accept ``token`` for ``protection`` (remembering it) or refuse it.

        Raises:
            ConfigError: the token is not a positive integer.
            StaleToken: a larger token was already seen for this protection.
        """
        if isinstance(token, bool) or not isinstance(token, int) or token <= 0:
            raise ConfigError(f"fencing token must be a positive integer, got {token!r}")
        newest = self._newest.get(protection, 0)
        if token < newest:
            raise StaleToken(
                f"protection {protection!r}: fencing token {token} is older than {newest}"
            )
        self._newest[protection] = token

    def newest(self, protection: str) -> int:
        """The largest token seen for ``protection`` (0: none)."""
        return self._newest.get(protection, 0)
