"""chain_hop_tags: the site-wide VLAN tag of each hop direction of a chain on the uplink trunk;
chains.path_versions: the host versions that carry a chain's last change (several hosts)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 16:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chain_hop_tags",
        sa.Column("tag", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column(
            "chain_id",
            sa.String(length=36),
            sa.ForeignKey("chains.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("hop", sa.String(length=255), nullable=False),
        sa.Column("released_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("chain_id", "hop"),
    )
    with op.batch_alter_table("chains") as batch:
        batch.add_column(sa.Column("path_versions", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("chains") as batch:
        batch.drop_column("path_versions")
    op.drop_table("chain_hop_tags")
