"""hosts.address (the node's internal address) and the migrations table

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 16:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("address", sa.String(length=255), nullable=True))
    op.create_table(
        "migrations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("instance_id", sa.String(length=36), nullable=False),
        sa.Column("instance_name", sa.String(length=63), nullable=False),
        sa.Column("source_host_id", sa.String(length=36), nullable=False),
        sa.Column("destination_host_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.Column("progress", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["source_host_id"],
            ["hosts.id"],
            name=op.f("fk_migrations_source_host_id_hosts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["destination_host_id"],
            ["hosts.id"],
            name=op.f("fk_migrations_destination_host_id_hosts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_migrations")),
    )
    op.create_index(op.f("ix_migrations_instance_id"), "migrations", ["instance_id"])
    op.create_index(op.f("ix_migrations_status"), "migrations", ["status"])


def downgrade() -> None:
    op.drop_index(op.f("ix_migrations_status"), table_name="migrations")
    op.drop_index(op.f("ix_migrations_instance_id"), table_name="migrations")
    op.drop_table("migrations")
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("address")
