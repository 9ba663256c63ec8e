"""access: users, roles, password history, recovery codes, login attempts, sessions,
API tokens and case grants (issue 15)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 13:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'users',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('login', sa.String(length=64), nullable=False),
        sa.Column('display_name', sa.String(length=200), nullable=False),
        sa.Column('officer_number', sa.String(length=32), nullable=True),
        sa.Column('unit', sa.String(length=200), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('locked_until', TZ, nullable=True),
        sa.Column('failed_logins', sa.Integer(), nullable=False),
        sa.Column('password_hash', sa.Text(), nullable=False),
        sa.Column('password_changed_at', TZ, nullable=False),
        sa.Column('must_change_password', sa.Boolean(), nullable=False),
        sa.Column('totp_secret', sa.String(length=64), nullable=True),
        sa.Column('totp_enabled', sa.Boolean(), nullable=False),
        sa.Column('totp_last_step', sa.BigInteger(), nullable=True),
        sa.Column('created_at', TZ, nullable=False),
        sa.Column('created_by', sa.String(length=200), nullable=False),
        sa.Column('last_login_at', TZ, nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('login'),
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_users_officer_number'), ['officer_number'],
                              unique=False)
    op.create_table(
        'user_roles',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('role', sa.String(length=32), nullable=False),
        sa.Column('granted_by', sa.String(length=200), nullable=False),
        sa.Column('granted_at', TZ, nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id']),
        sa.PrimaryKeyConstraint('user_id', 'role'),
    )
    op.create_table(
        'password_history',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('password_hash', sa.Text(), nullable=False),
        sa.Column('created_at', TZ, nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('password_history', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_password_history_user_id'), ['user_id'],
                              unique=False)
    op.create_table(
        'recovery_codes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('code_hash', sa.Text(), nullable=False),
        sa.Column('created_at', TZ, nullable=False),
        sa.Column('used_at', TZ, nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('recovery_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recovery_codes_user_id'), ['user_id'],
                              unique=False)
    op.create_table(
        'login_attempts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('login', sa.String(length=200), nullable=False),
        sa.Column('at', TZ, nullable=False),
        sa.Column('source', sa.String(length=200), nullable=False),
        sa.Column('result', sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_login_attempts_user_at', ['user_id', 'at'], unique=False)
    op.create_table(
        'sessions',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('secret_hash', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('created_at', TZ, nullable=False),
        sa.Column('last_seen_at', TZ, nullable=False),
        sa.Column('expires_at', TZ, nullable=False),
        sa.Column('source', sa.String(length=200), nullable=False),
        sa.Column('revoked_at', TZ, nullable=True),
        sa.Column('revoked_by', sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('secret_hash'),
    )
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sessions_user_id'), ['user_id'], unique=False)
    op.create_table(
        'api_tokens',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('secret_hash', sa.String(length=64), nullable=False),
        sa.Column('role', sa.String(length=32), nullable=False),
        sa.Column('unit', sa.String(length=200), nullable=False),
        sa.Column('created_by', sa.String(length=200), nullable=False),
        sa.Column('created_at', TZ, nullable=False),
        sa.Column('expires_at', TZ, nullable=False),
        sa.Column('last_used_at', TZ, nullable=True),
        sa.Column('revoked_at', TZ, nullable=True),
        sa.Column('revoked_by', sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
        sa.UniqueConstraint('secret_hash'),
    )
    op.create_table(
        'case_grants',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('case_id', sa.Integer(), nullable=False),
        sa.Column('starts_at', TZ, nullable=False),
        sa.Column('ends_at', TZ, nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('granted_by', sa.String(length=200), nullable=False),
        sa.Column('granted_at', TZ, nullable=False),
        sa.Column('revoked_at', TZ, nullable=True),
        sa.Column('revoked_by', sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(['case_id'], ['cases.id']),
        sa.ForeignKeyConstraint(['user_id'], ['users.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('case_grants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_grants_case_id'), ['case_id'], unique=False)
        batch_op.create_index('ix_case_grants_user', ['user_id', 'ends_at'], unique=False)


def downgrade() -> None:
    for table in ('case_grants', 'api_tokens', 'sessions', 'login_attempts',
                  'recovery_codes', 'password_history', 'user_roles', 'users'):
        op.drop_table(table)
