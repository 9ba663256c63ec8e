"""media: probe, time evidence, chapter groups, derivative provenance

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 06:55:30.287943
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('recording_groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=True),
    sa.Column('start', sa.DateTime(timezone=True), nullable=True),
    sa.Column('end', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('recording_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recording_groups_device_id'), ['device_id'], unique=False)

    with op.batch_alter_table('derivatives', schema=None) as batch_op:
        batch_op.add_column(sa.Column('method', sa.String(length=16), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('tool_version', sa.String(length=200), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('duration_s', sa.Float(), nullable=True))

    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('capture_end', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('media_kind', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('duration_s', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('probe', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('time_evidence', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('group_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('group_seq', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_recordings_group_id'), ['group_id'], unique=False)
        batch_op.create_foreign_key('fk_recordings_group_id', 'recording_groups', ['group_id'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.drop_constraint('fk_recordings_group_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_recordings_group_id'))
        batch_op.drop_column('group_seq')
        batch_op.drop_column('group_id')
        batch_op.drop_column('time_evidence')
        batch_op.drop_column('probe')
        batch_op.drop_column('duration_s')
        batch_op.drop_column('media_kind')
        batch_op.drop_column('capture_end')

    with op.batch_alter_table('derivatives', schema=None) as batch_op:
        batch_op.drop_column('duration_s')
        batch_op.drop_column('tool_version')
        batch_op.drop_column('method')

    with op.batch_alter_table('recording_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recording_groups_device_id'))

    op.drop_table('recording_groups')
