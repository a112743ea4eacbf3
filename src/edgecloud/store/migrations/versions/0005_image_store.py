"""image store: uploaded images by sha256 (no more host paths), kernels with their ramdisk

Images registered by a host path before this revision become ``legacy`` (their paths are
dropped: no API client may name a host file any more): listed, deletable, refused for new VNFs;
a VNF that used one keeps running where it runs, and its node reports that the image must be
uploaded again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 13:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("status", sa.String(16), nullable=False, server_default="legacy")
        )
        batch_op.add_column(sa.Column("sha256", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("size", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("virtual_size", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("ramdisk_id", sa.String(36), nullable=True))
        batch_op.create_foreign_key("fk_images_ramdisk_id_images", "images", ["ramdisk_id"], ["id"])
        batch_op.create_index("ix_images_sha256", ["sha256"])
        for column in ("disk_path", "kernel_path", "initrd_path"):
            batch_op.drop_column(column)


def downgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        for column in ("disk_path", "kernel_path", "initrd_path"):
            batch_op.add_column(sa.Column(column, sa.Text(), nullable=True))
        batch_op.drop_index("ix_images_sha256")
        batch_op.drop_constraint("fk_images_ramdisk_id_images", type_="foreignkey")
        for column in ("ramdisk_id", "virtual_size", "size", "sha256", "status"):
            batch_op.drop_column(column)
