"""users.disabled_from: what a disabled account was before it was disabled

Disabling an account (the system administrator's) and enabling it again must not lift a
lock in force (the security administrator's, or a lockout after failed logins): 三员分立.
The account's state was "locked" or "active" when disabled; enabling restores it (a
lockout that ended meanwhile is just over). Rows from before are NULL: "active".

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 19:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users') as batch_op:
        batch_op.add_column(sa.Column('disabled_from', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('users') as batch_op:
        batch_op.drop_column('disabled_from')
