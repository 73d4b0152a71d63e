"""PUID changes after studies exist (who, when, old -> new, why), and the
patients' birth date indexed for the probable-duplicate check

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 20:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'patient_puid_changes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('patient_id', sa.Integer(), nullable=False),
        sa.Column('old_puid', sa.String(length=64), nullable=False),
        sa.Column('new_puid', sa.String(length=64), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('changed_by_id', sa.Integer(), nullable=True),
        sa.Column('changed_by_name', sa.String(length=200), nullable=False),
        sa.Column('changed_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['changed_by_id'], ['users.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_patient_puid_changes_patient_id', 'patient_puid_changes', ['patient_id'], unique=False)
    op.create_index('ix_patient_puid_changes_old_puid', 'patient_puid_changes', ['old_puid'], unique=False)
    op.create_index('ix_patients_birth_date', 'patients', ['birth_date'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_patients_birth_date', table_name='patients')
    op.drop_index('ix_patient_puid_changes_old_puid', table_name='patient_puid_changes')
    op.drop_index('ix_patient_puid_changes_patient_id', table_name='patient_puid_changes')
    op.drop_table('patient_puid_changes')
