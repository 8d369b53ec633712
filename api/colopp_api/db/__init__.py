"""The API's database: SQLAlchemy 2.x models (:mod:`.models`), the store (:mod:`.store`),
schema by Alembic migrations (``colopp_api/migrations``, run to ``head`` at startup)."""
