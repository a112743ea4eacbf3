"""A CA rotation shared by every controller of the site: the site CA row keeps the old CA
(certificate and sealed key) during the overlap, a generation bumped by every change, and the
fingerprints of the CAs the site used before (a controller whose pki/ holds one of them was only
away during a rotation: it takes the store's CA; any other CA is refused)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01 06:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("site_ca") as batch:
        batch.add_column(sa.Column("previous_cert_pem", sa.Text(), nullable=True))
        batch.add_column(sa.Column("previous_key_encrypted", sa.Text(), nullable=True))
        batch.add_column(sa.Column("generation", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("retired", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("site_ca") as batch:
        batch.drop_column("retired")
        batch.drop_column("generation")
        batch.drop_column("previous_key_encrypted")
        batch.drop_column("previous_cert_pem")
