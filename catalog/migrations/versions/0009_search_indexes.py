"""search: indexes for recording search at a million recordings (catalog/search.py)

Search pages newest capture first and stops after a page; PostgreSQL walks an index in
that order (by officer or recorder: 0007's (officer_id | device_id, captured_at)). For
the rare flags (damaged, disagreeing times) walking the capture-time index would read
most of the table to find a page; a partial index holds only the flagged recordings.
Measured with bench/api.py: see docs/api.md.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 14:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

# The same expressions as catalog/search.py writes (a partial index is used only for a
# query whose condition is the same expression).
DAMAGED = "(flags ->> 'damaged') IS NOT NULL"
TIME = "(flags ->> 'time') IS NOT NULL"


def upgrade() -> None:
    op.create_index(
        'ix_recordings_damaged',
        'recordings',
        ['captured_at', 'id'],
        postgresql_where=sa.text(DAMAGED),
        sqlite_where=sa.text(DAMAGED),
    )
    op.create_index(
        'ix_recordings_time_flag',
        'recordings',
        ['captured_at', 'id'],
        postgresql_where=sa.text(TIME),
        sqlite_where=sa.text(TIME),
    )


def downgrade() -> None:
    op.drop_index('ix_recordings_time_flag', table_name='recordings')
    op.drop_index('ix_recordings_damaged', table_name='recordings')
