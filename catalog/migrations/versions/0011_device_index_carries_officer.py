"""recordings: the (device_id, captured_at) index also carries officer_id (and, on
PostgreSQL, id), so an officer's search answers its "carried" term from the index

An officer's own recordings include those captured on a recorder assigned to them whose
officer is someone else (access/policy.py, ``_own_recordings``). That term walks this
index per assignment and tests ``officer_id`` on every recording of the span; with the
index holding only (device_id, captured_at), PostgreSQL read each recording's heap row
for it (about 4,000 rows for the bench's officer at a million recordings: 80% of the
statement's time). With officer_id a key column and id included (SQLite's indexes hold
the rowid already), it is an index-only scan. The same number of indexes on recordings:
this one replaces the old, so ingest keeps paying for one. The device filter of search
and compliance coverage walk it as before (officer_id comes after the range columns).
Measured with bench/api.py's district: see docs/api.md.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 00:10:00
"""
from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_recordings_device_captured', table_name='recordings')
    op.create_index(
        'ix_recordings_device_captured',
        'recordings',
        ['device_id', 'captured_at', 'officer_id'],
        postgresql_include=['id'],
    )


def downgrade() -> None:
    op.drop_index('ix_recordings_device_captured', table_name='recordings')
    op.create_index('ix_recordings_device_captured', 'recordings', ['device_id', 'captured_at'])
