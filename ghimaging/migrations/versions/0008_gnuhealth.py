"""GNU Health sync: settings, links between local and GNU Health records, outbox

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 06:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('gnuhealth_config',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('url', sa.String(length=500), nullable=False),
    sa.Column('database', sa.String(length=100), nullable=False),
    sa.Column('username', sa.String(length=200), nullable=False),
    sa.Column('password_enc', sa.Text(), nullable=False),
    sa.Column('default_professional_id', sa.Integer(), nullable=True),
    sa.Column('checked_at', sa.DateTime(), nullable=True),
    sa.Column('check_ok', sa.Boolean(), nullable=False),
    sa.Column('check_error', sa.Text(), nullable=False),
    sa.Column('version', sa.String(length=32), nullable=False),
    sa.Column('modules', sa.String(length=300), nullable=False),
    sa.Column('professional_id', sa.Integer(), nullable=True),
    sa.Column('professional_name', sa.String(length=200), nullable=False),
    sa.Column('last_pull_at', sa.DateTime(), nullable=True),
    sa.Column('last_pull_error', sa.Text(), nullable=False),
    sa.Column('next_pull_at', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gnuhealth_config'))
    )
    op.create_table('gnuhealth_links',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('local_id', sa.Integer(), nullable=True),
    sa.Column('remote_id', sa.Integer(), nullable=False),
    sa.Column('origin', sa.String(length=8), nullable=False),
    sa.Column('remote_state', sa.String(length=16), nullable=False),
    sa.Column('remote_label', sa.String(length=200), nullable=False),
    sa.Column('problem', sa.Text(), nullable=False),
    sa.Column('synced_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gnuhealth_links')),
    sa.UniqueConstraint('kind', 'local_id', name='uq_gnuhealth_links_kind_local'),
    sa.UniqueConstraint('kind', 'remote_id', name='uq_gnuhealth_links_kind_remote')
    )
    op.create_table('gnuhealth_outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('state', sa.String(length=8), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.Column('error_code', sa.String(length=32), nullable=False),
    sa.Column('next_try_at', sa.DateTime(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['request_id'], ['imaging_requests.id'], name=op.f('fk_gnuhealth_outbox_request_id_imaging_requests'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gnuhealth_outbox'))
    )
    with op.batch_alter_table('gnuhealth_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_gnuhealth_outbox_due', ['state', 'next_try_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_gnuhealth_outbox_idempotency_key'), ['idempotency_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_gnuhealth_outbox_request_id'), ['request_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('gnuhealth_outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_gnuhealth_outbox_request_id'))
        batch_op.drop_index(batch_op.f('ix_gnuhealth_outbox_idempotency_key'))
        batch_op.drop_index('ix_gnuhealth_outbox_due')
    op.drop_table('gnuhealth_outbox')
    op.drop_table('gnuhealth_links')
    op.drop_table('gnuhealth_config')
