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
    op.create_table('dispute_intake',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('dispute_id', sa.Integer(), nullable=True),
    sa.Column('created_at', backend.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_dispute_intake'))
    )


def downgrade() -> None:
    op.drop_table('dispute_intake')
    with op.batch_alter_table('disputes') as batch:
        for name in _COLUMNS:
            batch.drop_index(f'ix_disputes_{name}')
            batch.drop_column(name)
