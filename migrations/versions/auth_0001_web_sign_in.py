"""web sign-in: web accounts, sessions, one-time codes, link codes, rate counters, the web
channel's messages and files

Revision ID: auth_0001
Revises: 0001_foundation
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backend.core.db import UTCDateTime

revision = "auth_0001"
down_revision = "0001_foundation"
branch_labels = ("auth",)
depends_on = None


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "web_accounts", _id(),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("phone", sa.String(20), nullable=True),
        sa.Column("login", sa.String(64), nullable=True),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("totp_secret", sa.String(64), nullable=True),
        sa.Column("totp_confirmed", sa.Boolean(), nullable=False),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_web_accounts_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_accounts")),
        sa.UniqueConstraint("phone", name=op.f("uq_web_accounts_phone")),
        sa.UniqueConstraint("login", name=op.f("uq_web_accounts_login")),
    )
    op.create_index(op.f("ix_web_accounts_user_id"), "web_accounts", ["user_id"], unique=True)
    op.create_table(
        "web_sessions", _id(),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("second_factor", sa.Boolean(), nullable=False),
        sa.Column("second_factor_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("user_agent", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_web_sessions_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
    )
    op.create_index(op.f("ix_web_sessions_token_hash"), "web_sessions", ["token_hash"], unique=True)
    op.create_index(op.f("ix_web_sessions_user_id"), "web_sessions", ["user_id"], unique=False)
    op.create_table(
        "web_login_codes", _id(),
        sa.Column("phone", sa.String(20), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_login_codes")),
    )
    op.create_index(op.f("ix_web_login_codes_phone"), "web_login_codes", ["phone"], unique=False)
    op.create_table(
        "web_link_codes", _id(),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_web_link_codes_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_link_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_web_link_codes_code_hash")),
    )
    op.create_index(op.f("ix_web_link_codes_user_id"), "web_link_codes", ["user_id"], unique=False)
    op.create_table(
        "rate_counters", _id(),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("window", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_counters")),
        sa.UniqueConstraint("key", "window", name=op.f("uq_rate_counters_key")),
    )
    op.create_table(
        "web_messages", _id(),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("mine", sa.Boolean(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_messages")),
    )
    op.create_index(op.f("ix_web_messages_chat_id"), "web_messages", ["chat_id"], unique=False)
    op.create_index(op.f("ix_web_messages_seq"), "web_messages", ["seq"], unique=False)
    op.create_index(op.f("ix_web_messages_at"), "web_messages", ["at"], unique=False)
    op.create_table(
        "web_files", _id(),
        sa.Column("file_id", sa.String(64), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("mime", sa.String(100), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_files")),
        sa.UniqueConstraint("file_id", "chat_id", name=op.f("uq_web_files_file_id")),
    )
    op.create_index(op.f("ix_web_files_file_id"), "web_files", ["file_id"], unique=False)
    op.create_index(op.f("ix_web_files_chat_id"), "web_files", ["chat_id"], unique=False)
    op.create_index(op.f("ix_web_files_at"), "web_files", ["at"], unique=False)


def downgrade() -> None:
    for t in ("web_files", "web_messages", "rate_counters", "web_link_codes", "web_login_codes",
              "web_sessions", "web_accounts"):
        op.drop_table(t)
