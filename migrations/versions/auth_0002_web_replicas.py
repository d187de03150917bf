"""web chat on every replica: an outbox delivery writes its transcript line once (dedupe), and on
PostgreSQL the change counter and the message ids come from sequences shared by the replicas

Revision ID: auth_0002
Revises: auth_0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "auth_0002"
down_revision = "auth_0001"
branch_labels = None
depends_on = None

ID_BLOCK = 1000  # backend.web.channel.ID_BLOCK


def upgrade() -> None:
    with op.batch_alter_table("web_messages") as b:
        b.add_column(sa.Column("dedupe", sa.String(64), nullable=True))
        b.create_unique_constraint(op.f("uq_web_messages_dedupe"), ["dedupe"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE web_messages_seq")
        op.execute("CREATE SEQUENCE web_message_id_blocks")
        op.execute("SELECT setval('web_messages_seq', (SELECT coalesce(max(seq), 0) + 1 FROM web_messages), false)")
        op.execute(f"SELECT setval('web_message_id_blocks', (SELECT coalesce(max(message_id), 0) / {ID_BLOCK} + 1 "
                   "FROM web_messages), false)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE web_message_id_blocks")
        op.execute("DROP SEQUENCE web_messages_seq")
    with op.batch_alter_table("web_messages") as b:
        b.drop_constraint(op.f("uq_web_messages_dedupe"), type_="unique")
        b.drop_column("dedupe")
