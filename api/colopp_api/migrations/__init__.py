"""Alembic migrations of the API's schema (``script_location = colopp_api:migrations``)."""
