"""A live migration's downtime limit, per migration (``vnf migrate --max-downtime MS``): the
longest QEMU may pause the guest at the end of a pre-copy move (before: 100 ms for every move)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01 03:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(
            sa.Column("max_downtime_ms", sa.Integer(), nullable=False, server_default="100")
        )


def downgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("max_downtime_ms")
