"""group readings say which callbacks they cover, so that a burst of group events is read once

Revision ID: 31f6aa815fc8
Revises: f8db8d19f917
Create Date: 2026-11-22 23:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '31f6aa815fc8'
down_revision = 'f8db8d19f917'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('group_chats', schema=None) as batch_op:
        batch_op.add_column(sa.Column('read_through_event', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('group_chats', schema=None) as batch_op:
        batch_op.drop_column('read_through_event')
