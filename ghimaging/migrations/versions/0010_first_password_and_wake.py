"""A password that must be changed at the next sign-in; a sync asked for
sooner than the periodic one (Orthanc's push)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 12:15:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('must_change_password', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    with op.batch_alter_table('orthanc_servers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sync_wanted_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('orthanc_servers', schema=None) as batch_op:
        batch_op.drop_column('sync_wanted_at')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('must_change_password')
