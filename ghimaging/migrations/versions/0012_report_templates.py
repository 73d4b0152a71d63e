"""Report templates per test and autosaved report drafts (placeholder until filled)

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
    pass


def downgrade() -> None:
    pass
