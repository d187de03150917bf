"""disputes: stats rollup per county, township and month

Revision ID: disputes_0002
Revises: disputes_0001
"""
from alembic import op
import sqlalchemy as sa


revision = 'disputes_0002'
down_revision = 'disputes_0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dispute_monthly',
    sa.Column('county_id', sa.Integer(), nullable=False),
    sa.Column('township_id', sa.Integer(), nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('decided', sa.Integer(), nullable=False),
    sa.Column('resolved', sa.Integer(), nullable=False),
    sa.Column('local_resolved', sa.Integer(), nullable=False),
    sa.Column('days_sum', sa.Float(), nullable=False),
    sa.Column('rated', sa.Integer(), nullable=False),
    sa.Column('satisfied', sa.Integer(), nullable=False),
    sa.Column('overdue', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('county_id', 'township_id', 'month', name=op.f('pk_dispute_monthly'))
    )
    # backfill from existing cases
    op.execute("""
        INSERT INTO dispute_monthly (county_id, township_id, month, total, decided, resolved, local_resolved,
                                     days_sum, rated, satisfied, overdue)
        SELECT county_id, COALESCE(township_id, 0), month, count(*),
               sum(CASE WHEN outcome IS NOT NULL THEN 1 ELSE 0 END),
               sum(CASE WHEN outcome = 'success' THEN 1 ELSE 0 END),
               sum(CASE WHEN outcome = 'success' AND escalated_county = 0 THEN 1 ELSE 0 END),
               coalesce(sum(CASE WHEN outcome = 'success' THEN resolution_days ELSE 0 END), 0),
               sum(CASE WHEN rating IS NOT NULL THEN 1 ELSE 0 END),
               sum(CASE WHEN rating IN ('satisfied', 'basic') THEN 1 ELSE 0 END),
               sum(overdue)
        FROM disputes GROUP BY county_id, COALESCE(township_id, 0), month
    """)


def downgrade() -> None:
    op.drop_table('dispute_monthly')
