"""etcd's v3 JSON gateway over httpx: the only place colopp talks to etcd.

Debian 12 ships etcd 3.4, whose gateway serves ``/v3/...`` on every client URL. Keys and
values travel base64-encoded; 64-bit integers travel as strings; fields equal to zero are
left out of answers. Every read here is linearizable (etcd's default), so a member cut off
from the majority cannot answer from stale state: it times out instead.

Errors: every transport failure, timeout or malformed answer becomes
:class:`~colopp.errors.EtcdUnavailable` (``raise ... from``), once, here.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from colopp.errors import ConfigError, EtcdUnavailable


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


@dataclass(frozen=True)
class KeyValue:
    """A key as etcd holds it."""

    key: str
    value: str
    mod_revision: int
    create_revision: int
    lease: int


def parse_kv(obj: dict[str, Any]) -> KeyValue:
    """A gateway ``kvs`` entry as a :class:`KeyValue` (absent numbers are 0)."""
    return KeyValue(
        key=_unb64(obj["key"]),
        value=_unb64(obj.get("value", "")),
        mod_revision=int(obj.get("mod_revision", 0)),
        create_revision=int(obj.get("create_revision", 0)),
        lease=int(obj.get("lease", 0)),
    )


def _term(data: dict[str, Any]) -> int:
    header = data.get("header")
    if not isinstance(header, dict):
        raise EtcdUnavailable(f"etcd: answer without a header {data!r}")
    return int(header.get("raft_term", 0))


class EtcdGateway:
    """A client of etcd's JSON gateway over one or more endpoints (tried in turn).

    ``transport`` is httpx's seam: tests swap the network for a handler.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        timeout: float = 1.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not endpoints:
            raise ConfigError("etcd: at least one endpoint is needed")
        for url in endpoints:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"etcd endpoint {url!r} must be an http(s) URL")
        self.endpoints = [url.rstrip("/") for url in endpoints]
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        """Close the connections."""
        await self._client.aclose()

    async def call(self, path: str, body: dict[str, Any], timeout: float | None = None) -> Any:
        """POST ``body`` to ``/v3/<path>`` on the first endpoint that answers.

        Raises:
            EtcdUnavailable: no endpoint answered in time with a JSON object.
        """
        failures: list[str] = []
        for base in self.endpoints:
            try:
                reply = await self._client.post(
                    f"{base}/v3/{path}",
                    json=body,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
                data = reply.json()
            except (httpx.HTTPError, ValueError) as exc:
                failures.append(f"{base}: {type(exc).__name__} {exc}".strip())
                continue
            if not isinstance(data, dict):
                failures.append(f"{base}: answer is not an object")
                continue
            if reply.status_code != 200 or "error" in data:
                failures.append(f"{base}: HTTP {reply.status_code} {data.get('error', '')}")
                continue
            return data
        raise EtcdUnavailable(f"etcd {path}: " + "; ".join(failures))

    async def lease_grant(self, ttl: int, timeout: float | None = None) -> tuple[int, int]:
        """A new lease: (id, granted ttl)."""
        data = await self.call("lease/grant", {"TTL": ttl}, timeout)
        try:
            return int(data["ID"]), int(data.get("TTL", 0))
        except (KeyError, ValueError) as exc:
            raise EtcdUnavailable(f"etcd lease/grant: bad answer {data!r}") from exc

    async def lease_keepalive(self, lease: int, timeout: float | None = None) -> tuple[int, int]:
        """Renew ``lease``: (its TTL now, 0 when it no longer exists; the raft term)."""
        data = await self.call("lease/keepalive", {"ID": str(lease)}, timeout)
        result = data.get("result")
        if not isinstance(result, dict):
            raise EtcdUnavailable(f"etcd lease/keepalive: bad answer {data!r}")
        return int(result.get("TTL", 0)), _term(result)

    async def lease_revoke(self, lease: int, timeout: float | None = None) -> None:
        """Revoke ``lease`` (its keys go with it)."""
        await self.call("lease/revoke", {"ID": str(lease)}, timeout)

    async def create(
        self, key: str, value: str, lease: int, timeout: float | None = None
    ) -> tuple[bool, KeyValue | None]:
        """Create ``key`` under ``lease`` unless it exists: (created, key as it is now).

        A retry after a lost answer finds the key under the same lease: that counts as
        created (the call is idempotent per lease).
        """
        k = _b64(key)
        body = {
            "compare": [{"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": [
                {"request_put": {"key": k, "value": _b64(value), "lease": str(lease)}},
                {"request_range": {"key": k}},
            ],
            "failure": [{"request_range": {"key": k}}],
        }
        data = await self.call("kv/txn", body, timeout)
        try:
            ranges = [r["response_range"] for r in data["responses"] if "response_range" in r]
            kvs = ranges[-1].get("kvs", [])
        except (KeyError, IndexError, TypeError) as exc:
            raise EtcdUnavailable(f"etcd kv/txn: bad answer {data!r}") from exc
        current = parse_kv(kvs[0]) if kvs else None
        created = bool(data.get("succeeded")) or (current is not None and current.lease == lease)
        return created, current

    async def get(self, key: str, timeout: float | None = None) -> tuple[KeyValue | None, int]:
        """The key as it is now (linearizable: the leader confirmed it still leads a
        quorum), or None; and the raft term it was read at."""
        data = await self.call("kv/range", {"key": _b64(key)}, timeout)
        kvs = data.get("kvs", [])
        return (parse_kv(kvs[0]) if kvs else None), _term(data)

    async def delete(self, key: str, timeout: float | None = None) -> None:
        """Delete ``key`` (whoever holds it)."""
        await self.call("kv/deleterange", {"key": _b64(key)}, timeout)
