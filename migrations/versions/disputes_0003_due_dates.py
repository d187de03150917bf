"""disputes: due-date columns swept by one interval job (no job per reminder), and one
intake key per chat draft (a double tap on 确认提交 creates one case)

Revision ID: disputes_0003
Revises: disputes_0002
"""
from alembic import op
import sqlalchemy as sa
import backend.core.db


revision = 'disputes_0003'
down_revision = 'disputes_0002'
branch_labels = None
depends_on = None

_COLUMNS = ('remind_at', 'due_at', 'session_remind_at', 'rating_remind_at')


def upgrade() -> None:
    with op.batch_alter_table('disputes') as batch:
        for name in _COLUMNS:
            batch.add_column(sa.Column(name, backend.core.db.UTCDateTime(timezone=True), nullable=True))
            batch.create_index(f'ix_disputes_{name}', [name])
    _fill_due_dates()
    op.create_table('dispute_intake',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('dispute_id', sa.Integer(), nullable=True),
    sa.Column('created_at', backend.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_dispute_intake'))
    )


def _fill_due_dates() -> None:
    """Open cases from before the sweep get their due dates (their one-off jobs only run the
    sweep now). A deadline already flagged overdue is not acted on again."""
    from datetime import datetime, timedelta, timezone

    dt = backend.core.db.UTCDateTime(timezone=True)
    t = sa.table('disputes', sa.column('id', sa.Integer), sa.column('status', sa.String),
                 sa.column('overdue', sa.Integer), sa.column('citizen_id', sa.Integer), sa.column('rating', sa.String),
                 *[sa.column(c, dt) for c in ('accept_due', 'resolve_due', 'session_at', 'closed_at', *_COLUMNS)])
    now = datetime.now(timezone.utc)
    conn = op.get_bind()
    for r in conn.execute(sa.select(t)).mappings():
        due = r['accept_due'] if r['status'] in ('new', 'transferred', 'escalated') else \
            r['resolve_due'] if r['status'] in ('accepted', 'mediating') else None
        values = {}
        if due is not None and (due > now or not r['overdue']):
            values['due_at'] = due
            if due - timedelta(hours=4) > now:
                values['remind_at'] = due - timedelta(hours=4)
        if r['status'] == 'mediating' and r['session_at'] is not None and r['session_at'] > now:
            values['session_remind_at'] = next((r['session_at'] - b for b in (timedelta(days=1), timedelta(hours=2))
                                                if r['session_at'] - b > now), None)
        if r['closed_at'] is not None and r['rating'] is None and r['citizen_id'] is not None:
            values['rating_remind_at'] = r['closed_at'] + timedelta(days=3)
        if values:
            conn.execute(t.update().where(t.c.id == r['id']).values(**values))


def downgrade() -> None:
    op.drop_table('dispute_intake')
    with op.batch_alter_table('disputes') as batch:
        for name in _COLUMNS:
            batch.drop_index(f'ix_disputes_{name}')
            batch.drop_column(name)
