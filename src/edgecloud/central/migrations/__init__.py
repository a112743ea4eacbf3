"""Central's schema migrations (Alembic), apart from a site's (store/migrations)."""

from pathlib import Path

MIGRATIONS = Path(__file__).parent
