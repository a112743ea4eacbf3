"""migrations.memory_copy: how a live migration copies the guest's memory (auto, pre-copy, paused)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 20:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(
            sa.Column("memory_copy", sa.String(10), nullable=False, server_default="auto")
        )


def downgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("memory_copy")
