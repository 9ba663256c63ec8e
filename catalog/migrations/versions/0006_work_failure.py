"""work items: why an item failed (deterministic or transient), next to its last error

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 11:00:00

Existing rows keep failure NULL: an item that failed under an older worker is FAILED (or
waiting to be retried) for a reason nobody classified; `liuhen worker retry --all-failed`
puts such items back, and the new worker classifies whatever happens then.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column without a default: SQLite adds it in place (no batch copy).
    op.add_column("work_items", sa.Column("failure", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("work_items", schema=None) as batch_op:
        batch_op.drop_column("failure")
