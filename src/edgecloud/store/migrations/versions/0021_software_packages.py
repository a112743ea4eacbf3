"""Software packages (issue 12): releases and patches of edgecloud uploaded to the site, with
their signed manifests (services/software.py).

Expand only: a new table an N-1 controller never reads.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-02 06:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "software_packages",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("release", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("applies_to", sa.String(64), nullable=True),
        sa.Column("reboot_required", sa.Boolean(), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("signer", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_software_packages")),
        sa.UniqueConstraint("release", name=op.f("uq_software_packages_release")),
    )
    op.create_index("ix_software_packages_sha256", "software_packages", ["sha256"])


def downgrade() -> None:
    op.drop_index("ix_software_packages_sha256", table_name="software_packages")
    op.drop_table("software_packages")
