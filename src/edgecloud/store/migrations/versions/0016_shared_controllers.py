"""The site's controller processes (where each serves the API and the agent gateway, and when
it was last alive), requests to an agent connected to another controller (console, ...) and
the site CA shared by them (its key encrypted with the site secret), and where the store keeps
a copy of each image blob (a PostgreSQL large object) for controllers that did not take the upload

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 23:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "controllers",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("api_url", sa.String(255), nullable=False),
        sa.Column("gateway", sa.String(255), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_controllers")),
    )
    op.create_table(
        "node_calls",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("host_id", sa.String(36), nullable=False),
        sa.Column("op", sa.String(63), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("timeout", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(255), nullable=True),
        sa.Column("done", sa.Boolean(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_calls")),
    )
    op.create_index("ix_node_calls_created_at", "node_calls", ["created_at"])
    op.create_table(
        "site_ca",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("cert_pem", sa.Text(), nullable=False),
        sa.Column("key_encrypted", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_site_ca")),
    )
    op.create_table(
        "image_blobs",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("oid", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_image_blobs")),
    )


def downgrade() -> None:
    op.drop_table("image_blobs")
    op.drop_table("site_ca")
    op.drop_table("node_calls")
    op.drop_table("controllers")
