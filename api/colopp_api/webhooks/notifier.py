"""Deliver notifications to webhooks in the background, with retries, logging every attempt.

:meth:`Notifier.observe` is called with each event a runner records (on the event loop); it
classifies it and starts one delivery task per matching webhook, so a slow receiver never
delays the runner. A delivery is a JSON POST signed with the webhook's secret; anything but a
2xx answer (or no answer in ``timeout`` seconds) is retried after ``backoff``, doubling, up to
``attempts`` times. Every attempt is a row of the delivery log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from colopp_api.db.store import Store
from colopp_api.webhooks.classify import classify
from colopp_api.webhooks.models import Webhook, WebhookDelivery
from colopp_api.webhooks.signing import HEADER, sign

log = logging.getLogger("colopp_api")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a notification is delivered."""

    attempts: int = 6
    backoff: float = 0.5  # seconds before the second attempt; doubles after each
    timeout: float = 5.0


class Notifier:
    """Webhook deliveries of one API process."""

    def __init__(
        self,
        store: Store,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.retry = retry or RetryPolicy()
        self.clock = clock
        self._client = httpx.AsyncClient(transport=transport, follow_redirects=False)
        self._states = {r["id"]: r["state"] for r in store.protections()}
        self._tasks: set[asyncio.Task[None]] = set()

    def observe(self, protection_id: str, event: str, data: dict[str, Any]) -> None:
        """Notify the webhooks that want this event (returns at once; on the event loop)."""
        before = self._states.get(protection_id)
        if event == "state" and isinstance(data.get("target"), str):
            self._states[protection_id] = data["target"]
        kinds = classify(event, data, before)
        if not kinds:
            return
        try:
            hooks = self._webhooks()
        except SQLAlchemyError as exc:
            log.warning("webhooks: cannot read them: %s", exc)
            return
        for kind in kinds:
            payload = {
                "id": secrets.token_hex(8),
                "type": kind,
                "protection": protection_id,
                "t": self.clock(),
                "event": {"type": event, "data": data},
            }
            for hook in hooks:
                if kind in hook["kinds"]:
                    task = asyncio.get_running_loop().create_task(self._deliver(hook, payload))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)

    def _webhooks(self) -> list[dict[str, Any]]:
        with self.store.session() as s:
            return [
                {"id": h.id, "url": h.url, "secret": h.secret, "kinds": h.kinds}
                for h in s.scalars(select(Webhook))
            ]

    async def _deliver(self, hook: dict[str, Any], payload: dict[str, Any]) -> None:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            HEADER: sign(hook["secret"], body),
            "X-Colopp-Event": payload["type"],
            "X-Colopp-Delivery": payload["id"],
            "User-Agent": "colopp-webhook",
        }
        delay = self.retry.backoff
        for attempt in range(1, self.retry.attempts + 1):
            started = time.monotonic()
            status: int | None = None
            error: str | None = None
            try:
                reply = await self._client.post(
                    hook["url"], content=body, headers=headers, timeout=self.retry.timeout
                )
                status = reply.status_code
                if not 200 <= status < 300:
                    error = f"HTTP {status}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            elapsed = (time.monotonic() - started) * 1000
            self._log(hook["id"], payload, attempt, status, error, elapsed)
            if error is None:
                return
            if attempt < self.retry.attempts:
                await asyncio.sleep(delay)  # the retry's backoff
                delay *= 2
        log.warning("webhook %s: gave up on %s (%s)", hook["id"], payload["type"], error)

    def _log(
        self,
        webhook_id: str,
        payload: dict[str, Any],
        attempt: int,
        status: int | None,
        error: str | None,
        elapsed_ms: float,
    ) -> None:
        row = WebhookDelivery(
            webhook_id=webhook_id,
            notification=payload["id"],
            kind=payload["type"],
            protection_id=payload["protection"],
            attempt=attempt,
            t=self.clock(),
            status_code=status,
            error=error,
            delivered=error is None,
            duration_ms=round(elapsed_ms, 3),
            payload=payload,
        )
        try:
            with self.store.session() as s, s.begin():
                s.add(row)
        except SQLAlchemyError as exc:  # the webhook was deleted meanwhile, or the DB is down
            log.warning("webhook %s: cannot log a delivery: %s", webhook_id, exc)

    async def close(self) -> None:
        """Cancel deliveries still retrying and close the HTTP client."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()
