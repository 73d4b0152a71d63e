"""What an edit of a request changed, as data: request_events.changes holds
[{"field", "old", "new"}] so the history is shown in the reader's language

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30 20:00:00

"""
import pathlib

import sqlalchemy as sa
from alembic import op

revision = '0017'
# Slots 0015 and 0016 are written at the same time as this one: follow the
# newest of them that exists.
_here = pathlib.Path(__file__).parent
down_revision = next((rev for rev in ('0016', '0015') if list(_here.glob(f'{rev}_*.py'))), '0014')
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('request_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('changes', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('request_events', schema=None) as batch_op:
        batch_op.drop_column('changes')
