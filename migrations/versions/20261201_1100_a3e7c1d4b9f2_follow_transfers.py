"""follow relations record a handover (在职/离职继承): who the customer was transferred from, and when

Revision ID: a3e7c1d4b9f2
Revises: 5c1d2e9b7a40
Create Date: 2026-12-01 11:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a3e7c1d4b9f2'
down_revision = '5c1d2e9b7a40'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('follow_relations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('transferred_from_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('transferred_at', sa.DateTime(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_follow_relations_transferred_from_id_staff'), 'staff', ['transferred_from_id'], ['id'], ondelete='SET NULL')


def downgrade():
    with op.batch_alter_table('follow_relations', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_follow_relations_transferred_from_id_staff'), type_='foreignkey')
        batch_op.drop_column('transferred_at')
        batch_op.drop_column('transferred_from_id')
