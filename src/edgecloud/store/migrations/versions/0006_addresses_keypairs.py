"""addresses and key pairs: subnets, fixed IPs per vNIC, key pairs, VNF hostname/key/user data

Revision ID: 0006
Revises: 0005 (relinked to the image store's 0005 when both are merged)
Create Date: 2026-11-26 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subnets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("network_id", sa.String(length=36), nullable=False),
        sa.Column("ip_version", sa.Integer(), nullable=False),
        sa.Column("cidr", sa.String(length=64), nullable=False),
        sa.Column("gateway_ip", sa.String(length=45), nullable=True),
        sa.Column("allocation_pools", sa.JSON(), nullable=False),
        sa.Column("dns_nameservers", sa.JSON(), nullable=False),
        sa.Column("host_routes", sa.JSON(), nullable=False),
        sa.Column("enable_dhcp", sa.Boolean(), nullable=False),
        sa.Column("ipv6_address_mode", sa.String(length=16), nullable=True),
        sa.Column("dhcp_address", sa.String(length=45), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["networks.id"],
            name=op.f("fk_subnets_network_id_networks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subnets")),
        sa.UniqueConstraint("name", name=op.f("uq_subnets_name")),
    )
    op.create_index(op.f("ix_subnets_network_id"), "subnets", ["network_id"])
    op.create_table(
        "fixed_ips",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("vnic_id", sa.String(length=36), nullable=False),
        sa.Column("subnet_id", sa.String(length=36), nullable=False),
        sa.Column("ip_address", sa.String(length=45), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subnet_id"], ["subnets.id"], name=op.f("fk_fixed_ips_subnet_id_subnets")
        ),
        sa.ForeignKeyConstraint(
            ["vnic_id"], ["vnics.id"], name=op.f("fk_fixed_ips_vnic_id_vnics"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fixed_ips")),
        sa.UniqueConstraint("subnet_id", "ip_address", name=op.f("uq_fixed_ips_subnet_id")),
    )
    op.create_index(op.f("ix_fixed_ips_vnic_id"), "fixed_ips", ["vnic_id"])
    op.create_table(
        "keypairs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("key_algorithm", sa.String(length=32), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keypairs")),
        sa.UniqueConstraint("name", name=op.f("uq_keypairs_name")),
    )
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hostname", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("key_name", sa.String(length=63), nullable=True))
        batch_op.add_column(sa.Column("public_key", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("user_data", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_column("user_data")
        batch_op.drop_column("public_key")
        batch_op.drop_column("key_name")
        batch_op.drop_column("hostname")
    op.drop_table("keypairs")
    op.drop_index(op.f("ix_fixed_ips_vnic_id"), table_name="fixed_ips")
    op.drop_table("fixed_ips")
    op.drop_index(op.f("ix_subnets_network_id"), table_name="subnets")
    op.drop_table("subnets")
