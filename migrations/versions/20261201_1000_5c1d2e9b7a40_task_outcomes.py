"""lifecycle tasks carry what the member did about them in the sidebar (done or skipped) and when

Revision ID: 5c1d2e9b7a40
Revises: 97b8f352d995
Create Date: 2026-12-01 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5c1d2e9b7a40'
down_revision = '97b8f352d995'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('lifecycle_tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('outcome', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('outcome_at', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('lifecycle_tasks', schema=None) as batch_op:
        batch_op.drop_column('outcome_at')
        batch_op.drop_column('outcome')
