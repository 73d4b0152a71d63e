"""A person's credentials for the report's signature block; when they last
saw their start page

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 16:10:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credentials', sa.String(length=200), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('queue_seen_at', sa.DateTime(), nullable=True))
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('credentials', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('queue_seen_at')
        batch_op.drop_column('credentials')
