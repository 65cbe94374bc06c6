"""welcome claim leases: a claim being sent is renewed while its sender lives

Revision ID: f8db8d19f917
Revises: b3f1c2d4a5e6
Create Date: 2026-11-22 23:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f8db8d19f917'
down_revision = 'b3f1c2d4a5e6'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('welcome_sends', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_until', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('welcome_sends', schema=None) as batch_op:
        batch_op.drop_column('lease_until')
