"""Releases (issue 12): each host's agent release and the protocol version its session
speaks (negotiated at hello), each controller's release and the protocol versions it speaks.

Expand only: nullable columns an N-1 controller never reads or writes (its rows leave them
NULL), so it keeps working on a database this release migrated.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01 19:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("release", sa.String(64), nullable=True))
        batch.add_column(sa.Column("protocol", sa.Integer(), nullable=True))
    with op.batch_alter_table("controllers") as batch:
        batch.add_column(sa.Column("release", sa.String(64), nullable=True))
        batch.add_column(sa.Column("protocol_oldest", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("protocol", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("controllers") as batch:
        batch.drop_column("protocol")
        batch.drop_column("protocol_oldest")
        batch.drop_column("release")
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("protocol")
        batch.drop_column("release")
