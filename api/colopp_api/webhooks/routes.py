"""``/v1/webhooks``: register, list and delete webhooks, read their delivery log (write token:
a webhook's URL and secret are an operator's business)."""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from colopp_api.auth import Writer
from colopp_api.db.store import Store
from colopp_api.netcheck import url_refusal
from colopp_api.schemas import Problem
from colopp_api.webhooks.classify import KINDS
from colopp_api.webhooks.models import Webhook, WebhookDelivery

router = APIRouter(tags=["webhooks"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (401, 403, 404, 422)
}
WebhookId = Annotated[str, Path(pattern=r"^[a-f0-9]{12}$", description="the webhook's id")]


class WebhookCreate(BaseModel):
    """A receiver URL, the notification kinds it wants (default: all but ``state``), and
    optionally the secret to sign with (else the API makes one, shown once)."""

    model_config = ConfigDict(extra="forbid")

    url: AnyHttpUrl
    kinds: list[str] = Field(default_factory=lambda: [k for k in KINDS if k != "state"])
    secret: str | None = Field(default=None, min_length=16, max_length=256)

    @field_validator("kinds")
    @classmethod
    def known_kinds(cls, kinds: list[str]) -> list[str]:
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown or not kinds:
            raise ValueError(f"kinds must be a non-empty subset of {', '.join(KINDS)}")
        return sorted(set(kinds), key=KINDS.index)


class WebhookOut(BaseModel):
    """A webhook; ``secret`` only in the answer to its creation."""

    id: str
    url: str
    kinds: list[str]
    created_at: float
    secret: str | None = None


class WebhookList(BaseModel):
    webhooks: list[WebhookOut]


class Delivery(BaseModel):
    """One attempt to deliver one notification."""

    id: int
    notification: str
    kind: str
    protection_id: str | None
    attempt: int
    t: float
    status_code: int | None
    error: str | None
    delivered: bool
    duration_ms: float


class DeliveryLog(BaseModel):
    deliveries: list[Delivery]


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _out(hook: Webhook, secret: str | None = None) -> WebhookOut:
    return WebhookOut(
        id=hook.id, url=hook.url, kinds=hook.kinds, created_at=hook.created_at, secret=secret
    )


@router.post("/v1/webhooks", status_code=status.HTTP_201_CREATED, responses=ERRORS)
async def create_webhook(body: WebhookCreate, request: Request, _: Writer) -> WebhookOut:
    """Register a webhook; its deliveries carry ``X-Colopp-Signature: sha256=HMAC(secret,
    body)``."""
    refused = url_refusal(body.url.host, request.app.state.settings.webhook_networks)
    if refused is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, refused)
    secret = body.secret or secrets.token_urlsafe(32)
    hook = Webhook(
        id=secrets.token_hex(6),
        url=str(body.url),
        secret=secret,
        kinds=body.kinds,
        created_at=time.time(),
    )
    with _store(request).session() as s, s.begin():
        s.add(hook)
    return _out(hook, secret)


@router.get("/v1/webhooks", responses=ERRORS)
async def list_webhooks(request: Request, _: Writer) -> WebhookList:
    """Every webhook (without secrets)."""
    with _store(request).session() as s:
        hooks = s.scalars(select(Webhook).order_by(Webhook.created_at))
        return WebhookList(webhooks=[_out(h) for h in hooks])


@router.delete(
    "/v1/webhooks/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS
)
async def delete_webhook(webhook_id: WebhookId, request: Request, _: Writer) -> None:
    """Forget a webhook and its delivery log (deliveries in flight stop)."""
    with _store(request).session() as s, s.begin():
        hook = s.get(Webhook, webhook_id)
        if hook is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no webhook {webhook_id}")
        s.delete(hook)


@router.get("/v1/webhooks/{webhook_id}/deliveries", responses=ERRORS)
async def webhook_deliveries(
    webhook_id: WebhookId,
    request: Request,
    _: Writer,
    after: Annotated[int, Query(ge=0, le=2**62, description="deliveries above this id")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeliveryLog:
    """The webhook's delivery attempts, oldest first."""
    with _store(request).session() as s:
        if s.get(Webhook, webhook_id) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no webhook {webhook_id}")
        rows = s.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.webhook_id == webhook_id, WebhookDelivery.id > after)
            .order_by(WebhookDelivery.id)
            .limit(limit)
        )
        return DeliveryLog(
            deliveries=[Delivery(**{f: getattr(r, f) for f in Delivery.model_fields}) for r in rows]
        )
