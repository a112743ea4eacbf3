"""stacks keep their files and environment files; stack resources keep computed attributes

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("stacks", sa.Column("files", sa.JSON(), nullable=True))
    op.add_column("stacks", sa.Column("environment_files", sa.JSON(), nullable=True))
    op.add_column("stack_resources", sa.Column("attributes", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("stack_resources", "attributes")
    op.drop_column("stacks", "environment_files")
    op.drop_column("stacks", "files")
