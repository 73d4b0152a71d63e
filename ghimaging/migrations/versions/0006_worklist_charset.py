"""worklist template charset fallback

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 05:30:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Server defaults only fill the existing rows; the models give the values
    # of new ones, so the defaults are dropped again (as in 0003).
    with op.batch_alter_table('worklist_templates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('utf8_fallback', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('imaging_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('worklist_charset', sa.String(length=64), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('worklist_problem', sa.Text(), nullable=False, server_default=''))
    with op.batch_alter_table('orthanc_servers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('default_encoding', sa.String(length=32), nullable=False, server_default=''))

    with op.batch_alter_table('worklist_templates', schema=None) as batch_op:
        batch_op.alter_column('utf8_fallback', server_default=None)
    with op.batch_alter_table('imaging_requests', schema=None) as batch_op:
        batch_op.alter_column('worklist_charset', server_default=None)
        batch_op.alter_column('worklist_problem', server_default=None)
    with op.batch_alter_table('orthanc_servers', schema=None) as batch_op:
        batch_op.alter_column('default_encoding', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('orthanc_servers', schema=None) as batch_op:
        batch_op.drop_column('default_encoding')
    with op.batch_alter_table('imaging_requests', schema=None) as batch_op:
        batch_op.drop_column('worklist_problem')
        batch_op.drop_column('worklist_charset')
    with op.batch_alter_table('worklist_templates', schema=None) as batch_op:
        batch_op.drop_column('utf8_fallback')
