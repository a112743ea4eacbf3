"""Orchestrated upgrades (issue 12): an upgrade and its steps, one per controller and host
(services/upgrade_runs.py).

Expand only: new tables an N-1 controller never reads.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02 07:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upgrades",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("to_release", sa.String(64), nullable=False),
        sa.Column("from_release", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("max_parallel", sa.Integer(), nullable=False),
        sa.Column("stop_on_alarm", sa.Boolean(), nullable=False),
        sa.Column("reboot", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upgrades")),
    )
    op.create_index("ix_upgrades_state", "upgrades", ["state"])
    op.create_table(
        "upgrade_steps",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("upgrade_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("locked", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["upgrade_id"],
            ["upgrades.id"],
            name=op.f("fk_upgrade_steps_upgrade_id_upgrades"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upgrade_steps")),
    )


def downgrade() -> None:
    op.drop_table("upgrade_steps")
    op.drop_index("ix_upgrades_state", table_name="upgrades")
    op.drop_table("upgrades")
