"""``X-Colopp-Signature: sha256=HEX``: HMAC-SHA256 of the exact body with the webhook's secret."""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Colopp-Signature"


def sign(secret: str, body: bytes) -> str:
    """The header's value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` (constant-time comparison)."""
    return hmac.compare_digest(sign(secret, body), header)
