"""scheduler indexes: usage per (host, flavor) and hosts of an anti-affinity group

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 04:30:00
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_instances_host_flavor", "instances", ["host_id", "flavor_id"])
    op.create_index("ix_instances_group_host", "instances", ["anti_affinity_group", "host_id"])


def downgrade() -> None:
    op.drop_index("ix_instances_group_host", table_name="instances")
    op.drop_index("ix_instances_host_flavor", table_name="instances")
