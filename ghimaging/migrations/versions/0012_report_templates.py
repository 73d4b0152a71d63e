"""Report templates per test and autosaved report drafts; a patient's alerts
shown on the reporting desk

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 16:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'report_templates',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('test_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['test_id'], ['imaging_tests.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('test_id', 'name', name='uq_report_templates_test_name'),
    )
    op.create_index('ix_report_templates_test_id', 'report_templates', ['test_id'], unique=False)
    op.create_table(
        'report_drafts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('request_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('saved_at', sa.DateTime(), nullable=False),
        sa.Column('based_on', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['request_id'], ['imaging_requests.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('request_id', 'user_id', name='uq_report_drafts_request_user'),
    )
    op.create_index('ix_report_drafts_request_id', 'report_drafts', ['request_id'], unique=False)
    op.create_index('ix_report_drafts_user', 'report_drafts', ['user_id'], unique=False)
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('alerts', sa.Text(), nullable=False, server_default=''))
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.alter_column('alerts', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.drop_column('alerts')
    op.drop_index('ix_report_drafts_user', table_name='report_drafts')
    op.drop_index('ix_report_drafts_request_id', table_name='report_drafts')
    op.drop_table('report_drafts')
    op.drop_index('ix_report_templates_test_id', table_name='report_templates')
    op.drop_table('report_templates')
