"""docking files, docking uid and totals

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 06:29:26.712600
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('docking_files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('docking_id', sa.Integer(), nullable=False),
    sa.Column('path_key', sa.String(length=64), nullable=False),
    sa.Column('relpath', sa.Text(), nullable=False),
    sa.Column('relpath_raw', sa.LargeBinary(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('mtime', sa.DateTime(timezone=True), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('recording_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['docking_id'], ['dockings.id'], ),
    sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('docking_id', 'path_key')
    )
    with op.batch_alter_table('docking_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_docking_files_docking_id'), ['docking_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_docking_files_recording_id'), ['recording_id'], unique=False)

    with op.batch_alter_table('dockings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('uid', sa.String(length=36), nullable=False))
        batch_op.add_column(sa.Column('files_total', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('bytes_total', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('problems', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.create_unique_constraint('uq_dockings_uid', ['uid'])



def downgrade() -> None:
    with op.batch_alter_table('dockings', schema=None) as batch_op:
        batch_op.drop_constraint('uq_dockings_uid', type_='unique')
        batch_op.drop_column('problems')
        batch_op.drop_column('bytes_total')
        batch_op.drop_column('files_total')
        batch_op.drop_column('uid')

    with op.batch_alter_table('docking_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_docking_files_recording_id'))
        batch_op.drop_index(batch_op.f('ix_docking_files_docking_id'))

    op.drop_table('docking_files')
