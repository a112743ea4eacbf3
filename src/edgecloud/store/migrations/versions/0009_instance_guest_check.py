"""instances.guest_check: a guest that can report its vNICs neither way is 'unverifiable'

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 13:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("guest_check", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("guest_check")
