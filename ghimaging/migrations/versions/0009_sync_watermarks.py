"""Sync watermarks: the /changes index a study row is current at, and the
last index that may have changed a study we did not fetch after it

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 09:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('orthanc_servers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content_change', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('orthanc_studies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('synced_change', sa.Integer(), nullable=False, server_default='0'))
    # Rows synced before this revision are current at an unknown index: any
    # change up to the processed one may be new to them.
    op.execute("UPDATE orthanc_servers SET content_change = last_change")


def downgrade() -> None:
    with op.batch_alter_table('orthanc_studies', schema=None) as batch_op:
        batch_op.drop_column('synced_change')
    with op.batch_alter_table('orthanc_servers', schema=None) as batch_op:
        batch_op.drop_column('content_change')
