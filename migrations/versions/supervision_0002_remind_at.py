"""supervision: due-date columns swept by one interval job (no APScheduler job per reminder)

Revision ID: supervision_0002
Revises: supervision_0001
Create Date: 2026-12-03 10:00:00
"""
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from alembic import op

import backend.core.db

revision = "supervision_0002"
down_revision = "supervision_0001"
branch_labels = None
depends_on = None

DAY = timedelta(days=1)


def _next_reply_reminder(due: datetime, t: datetime) -> datetime:
    for at in (due - 7 * DAY, due - DAY, due + DAY):
        if at > t:
            return at
    return due + DAY * (int((t - due) / DAY) + 1)


def upgrade() -> None:
    for table in ("sup_items", "sup_suggestions"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("remind_at", backend.core.db.UTCDateTime(timezone=True), nullable=True))
            batch_op.create_index(batch_op.f(f"ix_{table}_remind_at"), ["remind_at"], unique=False)
    # What the per-reminder jobs would have sent becomes a due date the sweep reads.
    dt = backend.core.db.UTCDateTime(timezone=True)
    items = sa.table("sup_items", sa.column("id", sa.Integer), sa.column("status", sa.String),
                     sa.column("acceptance_due", dt), sa.column("remind_at", dt))
    sugg = sa.table("sup_suggestions", sa.column("id", sa.Integer), sa.column("item_id", sa.Integer),
                    sa.column("reply_due", dt), sa.column("replied_at", dt), sa.column("followup_at", dt),
                    sa.column("remind_at", dt))
    conn = op.get_bind()
    conn.execute(items.update().where(items.c.status.in_(("submitted", "appealed")))
                 .values(remind_at=items.c.acceptance_due))
    t = datetime.now(timezone.utc)
    rows = conn.execute(sa.select(sugg.c.id, sugg.c.reply_due, sugg.c.replied_at, sugg.c.followup_at,
                                  items.c.status).join(items, items.c.id == sugg.c.item_id)).all()
    for sid, due, replied, followup, status in rows:
        at = None
        if replied is None and status == "suggested":
            at = _next_reply_reminder(due, t)
        elif replied is not None and followup is not None and followup > t:
            at = followup
        if at is not None:
            conn.execute(sugg.update().where(sugg.c.id == sid).values(remind_at=at))


def downgrade() -> None:
    for table in ("sup_suggestions", "sup_items"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_remind_at"))
            batch_op.drop_column("remind_at")
