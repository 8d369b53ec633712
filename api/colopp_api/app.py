"""The FastAPI application: settings, database (migrated to head), manager, routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from colopp.errors import ConfigError
from colopp.tls import agent_client_context
from colopp_api.config import Settings
from colopp_api.dashboard import router as dashboard_router
from colopp_api.db.store import Store, make_engine, migrate
from colopp_api.guard import RequestGuard
from colopp_api.live.manager import ProtectionManager
from colopp_api.routes import router
from colopp_api.tls import TlsFiles, transport_notices
from colopp_api.webhooks.routes import router as webhooks_router

log = logging.getLogger("colopp_api")


def _reason(errors: list[dict[str, object]]) -> str:
    parts = []
    for error in errors[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")  # type: ignore[attr-defined]
        parts.append(f"{where or 'body'}: {error.get('msg')}")
    return "; ".join(parts) or "invalid request"


async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    detail = {
        "detail": _reason(errors),
        "errors": [{"loc": e.get("loc"), "msg": e.get("msg")} for e in errors],
    }
    return JSONResponse(detail, status_code=422)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail else "request refused"
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; the database is migrated and pairs re-attached when it starts."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        migrate(engine, settings.database_url)
        store = Store(engine)
        manager = ProtectionManager(store, settings)
        app.state.settings, app.state.store, app.state.manager = settings, store, manager
        leadership = None
        if settings.etcd_endpoints:  # fleet mode: supervise only while leading
            from colopp_api.live.leading import Leadership

            leadership = Leadership(manager, settings.etcd_endpoints, settings.replica)
            leadership.start()
        else:
            await manager.reattach_all()
        app.state.leadership = leadership
        log.info("colopp API ready (%d protections)", len(manager.runners))
        try:
            yield
        finally:
            if leadership is not None:
                await leadership.close()
            await manager.close()
            engine.dispose()

    app = FastAPI(
        title="colopp",
        version="1",
        description="Protect VMs with COLO: protections, failover, events, metrics.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(router)
    app.include_router(dashboard_router)
    app.add_middleware(RequestGuard, settings=settings)
    app.include_router(webhooks_router)
    return app


def check_database(url: str) -> None:
    """Connect once, so that a wrong ``COLOPP_DATABASE_URL`` is a clear message at start.

    Raises:
        ConfigError: the database cannot be reached.
    """
    engine = make_engine(url)
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        reason = str(exc.orig if isinstance(exc, DBAPIError) else exc).strip().splitlines()
        raise ConfigError(
            f"COLOPP_DATABASE_URL: cannot connect: {reason[0] if reason else exc}"
        ) from exc
    finally:
        engine.dispose()


def serve(host: str, port: int, log_level: str = "info", tls: TlsFiles | None = None) -> None:
    """Run the API with uvicorn on the asyncio loop (pyroute2 breaks under uvloop); HTTPS
    with ``tls``."""
    import uvicorn

    from colopp.agent.server import raise_open_files_limit

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    raise_open_files_limit()  # clients, agents (three connections per host and pair)
    for level, notice in transport_notices(host, tls, agent_client_context() is not None):
        log.log(level, "%s", notice)
    app = create_app()
    check_database(app.state.settings.database_url)
    uvicorn.run(
        app,
        ssl_certfile=str(tls.cert) if tls else None,
        ssl_keyfile=str(tls.key) if tls else None,
        host=host,
        port=port,
        loop="asyncio",
        http="h11",
        log_level=log_level,
        lifespan="on",
        # Open dashboard streams must not hold a shutdown (or a restart) for long.
        timeout_graceful_shutdown=5,
    )
