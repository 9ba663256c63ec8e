"""tombstones: one per expiry (a recording restored after its expiry may expire again)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 08:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# 0004 created the unique constraint without a name: PostgreSQL named it, SQLite did not;
# batch mode (SQLite) names it by this convention so that it can be dropped.
NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    found = [uc["name"] for uc in sa.inspect(op.get_bind()).get_unique_constraints("tombstones")
             if uc["column_names"] == ["recording_id"]]
    with op.batch_alter_table('tombstones', schema=None, naming_convention=NAMING) as batch_op:
        for name in found:
            batch_op.drop_constraint(name or "uq_tombstones_recording_id", type_="unique")
        batch_op.create_index(batch_op.f('ix_tombstones_recording_id'), ['recording_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('tombstones', schema=None, naming_convention=NAMING) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tombstones_recording_id'))
        batch_op.create_unique_constraint("uq_tombstones_recording_id", ['recording_id'])
