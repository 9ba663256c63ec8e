"""compliance: sampling reviews (案卷评查) and their verdicts; recording indexes for coverage

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 11:00:00
"""
from alembic import op
import sqlalchemy as sa



revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Coverage (compliance.history) reads recordings by device or officer and capture start.
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.create_index('ix_recordings_device_captured', ['device_id', 'captured_at'],
                              unique=False)
        batch_op.create_index('ix_recordings_officer_captured', ['officer_id', 'captured_at'],
                              unique=False)
    op.create_table(
        'review_samples',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('unit', sa.String(length=200), nullable=False),
        sa.Column('period', sa.String(length=16), nullable=False),
        sa.Column('seed', sa.String(length=200), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.Column('population_hash', sa.String(length=64), nullable=False),
        sa.Column('population', sa.JSON(), nullable=False),
        sa.Column('sample', sa.JSON(), nullable=False),
        sa.Column('actor', sa.String(length=200), nullable=False),
        sa.Column('supersedes', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['supersedes'], ['review_samples.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('review_samples', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_review_samples_unit'), ['unit'], unique=False)
    op.create_table(
        'review_verdicts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('sample_id', sa.Integer(), nullable=False),
        sa.Column('action_id', sa.Integer(), nullable=False),
        sa.Column('verdict', sa.String(length=8), nullable=False),
        sa.Column('checklist', sa.JSON(), nullable=False),
        sa.Column('notes', sa.Text(), nullable=False),
        sa.Column('reviewer', sa.String(length=200), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('rectified_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('rectified_by', sa.String(length=200), nullable=True),
        sa.Column('rectification', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['action_id'], ['enforcement_actions.id']),
        sa.ForeignKeyConstraint(['sample_id'], ['review_samples.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('review_verdicts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_review_verdicts_action_id'), ['action_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_review_verdicts_sample_id'), ['sample_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.drop_index('ix_recordings_officer_captured')
        batch_op.drop_index('ix_recordings_device_captured')
    op.drop_table('review_verdicts')
    op.drop_table('review_samples')
