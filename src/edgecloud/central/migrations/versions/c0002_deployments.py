"""Central's catalogue of service templates and the deployments of them to sites; each site's
group and its desired and applied versions (issue 13).

Revision ID: c0002
Revises: c0001
Create Date: 2026-12-02 18:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "c0002"
down_revision = "c0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.add_column(sa.Column("group", sa.String(63), nullable=True))
        batch.create_index(batch.f("ix_sites_group"), ["group"])
        batch.add_column(sa.Column("desired_version", sa.Integer(), nullable=False,
                                   server_default="0"))  # fmt: skip
        batch.add_column(sa.Column("applied_version", sa.Integer(), nullable=False,
                                   server_default="0"))  # fmt: skip
    op.create_table(
        "catalogue",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalogue")),
        sa.UniqueConstraint("name", name=op.f("uq_catalogue_name")),
    )
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("site_id", sa.String(36), nullable=False),
        sa.Column("template", sa.String(63), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_deployments_site_id_sites"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
        sa.UniqueConstraint("site_id", "name", name=op.f("uq_deployments_site_id")),
    )
    op.create_index(op.f("ix_deployments_site_id"), "deployments", ["site_id"])


def downgrade() -> None:
    op.drop_table("deployments")
    op.drop_table("catalogue")
    with op.batch_alter_table("sites") as batch:
        batch.drop_column("applied_version")
        batch.drop_column("desired_version")
        batch.drop_index(batch.f("ix_sites_group"))
        batch.drop_column("group")
