"""The leadership row: the fencing epoch of the controller that leads the site
(store/leadership.py); one row, id 1, epoch 0 until a controller on PostgreSQL first leads

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 23:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "leadership",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leadership")),
    )
    op.bulk_insert(table, [{"id": 1, "epoch": 0, "holder": ""}])


def downgrade() -> None:
    op.drop_table("leadership")
