"""API tokens with customer scope, expiry, revocation and rotation; the audit log; the
customer that owns a stack or a VNF (services/authorization.py)

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 19:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("customer", sa.String(255), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True))
    for table in ("stacks", "instances"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("customer", sa.String(255), nullable=True))
            batch.create_index(f"ix_{table}_customer", ["customer"])
    op.create_table(
        "audit_records",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(63), nullable=False),
        sa.Column("action", sa.String(255), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("client", sa.String(255), nullable=False),
        sa.Column("anonymous", sa.Boolean(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_records")),
    )
    op.create_index("ix_audit_records_at", "audit_records", ["at"])
    op.create_index("ix_audit_records_actor", "audit_records", ["actor"])
    op.create_index("ix_audit_records_target", "audit_records", ["target"])
    op.create_index("ix_audit_records_class_seq", "audit_records", ["anonymous", "seq"])


def downgrade() -> None:
    op.drop_table("audit_records")
    for table in ("stacks", "instances"):
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_customer")
            batch.drop_column("customer")
    with op.batch_alter_table("api_tokens") as batch:
        for column in ("rotated_at", "revoked_at", "expires_at", "customer"):
            batch.drop_column(column)
