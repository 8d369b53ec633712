"""Fencing tokens on the agent's side (pure).

A command about a protection carries the revision of the key that gave its sender the
right to serve. Revisions only grow in etcd, so a newer holder always has a larger token.
An agent remembers the largest token it has seen per protection and refuses anything
smaller: a stale primary (paused past its lease, then waking) cannot command anyone.
"""

from __future__ import annotations

from typing import Any

from colopp.errors import ConfigError, StaleToken

#: The request parameter that carries a fencing token: ``{"protection": str, "token": int}``.
FENCE_PARAM = "fence"
#: The token name of the controller's leadership (a colon: never a protection's name).
CONTROLLER_FENCE = "colopp:controller"


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


def admit_request(gate: TokenGate, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters without :data:`FENCE_PARAM`, once its token was admitted.

    Requests without one pass (single-controller mode sends none), except once a leading
    controller's token was seen: from then on only fenced requests are served.

    Raises:
        ConfigError: a malformed fence parameter.
        StaleToken: the token is older than one seen for that protection.
    """
    if FENCE_PARAM not in params:
        if gate.newest(CONTROLLER_FENCE):
            raise StaleToken("this agent obeys a leading controller: the request has no token")
        return params
    rest = {k: v for k, v in params.items() if k != FENCE_PARAM}
    fence = params[FENCE_PARAM]
    if not isinstance(fence, dict) or not isinstance(fence.get("protection"), str):
        raise ConfigError('fence must be {"protection": name, "token": positive integer}')
    gate.admit(fence["protection"], fence.get("token"))
    return rest
