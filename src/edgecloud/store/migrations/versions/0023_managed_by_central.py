"""Stacks and chains central deployed (issue 13): ``stacks.managed_by`` and
``chains.managed_by`` ("central"; null: the site's own).

Expand only: a nullable column an N-1 controller never reads.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02 18:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("stacks", "chains"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("managed_by", sa.String(16), nullable=True))


def downgrade() -> None:
    for table in ("chains", "stacks"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("managed_by")
