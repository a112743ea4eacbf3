"""Alembic migrations of the edgecloud store (one file per revision in versions/)."""
