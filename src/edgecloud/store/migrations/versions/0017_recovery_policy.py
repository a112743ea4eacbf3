"""VNF recovery policy: what happens to a VNF when its host fails (services/recovery.py):
recover (default: rebuilt on another host), restart (in place, when the host returns), none

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30 23:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(
            sa.Column("recovery_policy", sa.String(8), nullable=False, server_default="recover")
        )


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("recovery_policy")
