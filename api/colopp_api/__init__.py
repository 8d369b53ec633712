"""colopp's REST API: protect VMs, fail over, watch checkpoints (FastAPI + SQLAlchemy).

The folders follow the request path: :mod:`colopp_api.routes` (HTTP) → :mod:`colopp_api.live`
(one runner per protection, driving colopp's PairController and PairSupervisor) →
:mod:`colopp_api.db` (SQLAlchemy models, the store, Alembic migrations in ``migrations/``).
"""
