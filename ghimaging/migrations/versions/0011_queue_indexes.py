"""Indexes for the role work queues of the start page (imaging/queues.py)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 16:00:00

"""
from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_imaging_requests_scheduled', 'imaging_requests', ['scheduled_at', 'id'])
    op.create_index('ix_imaging_requests_queue', 'imaging_requests', ['state', 'images_available', 'scheduled_at'])
    op.create_index('ix_imaging_requests_physician', 'imaging_requests', ['requesting_physician_id', 'state', 'id'])
    op.create_index('ix_results_finalised', 'results', ['finalised_at', 'id'])


def downgrade() -> None:
    op.drop_index('ix_results_finalised', table_name='results')
    op.drop_index('ix_imaging_requests_physician', table_name='imaging_requests')
    op.drop_index('ix_imaging_requests_queue', table_name='imaging_requests')
    op.drop_index('ix_imaging_requests_scheduled', table_name='imaging_requests')
