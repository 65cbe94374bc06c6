"""on-job handovers (在职继承): the message WeCom sends the customer once taken over, and why an item
cannot move (checked before WeCom is asked); per store: 删人提醒 now or in the digest, handover by rule;
the mirror of WeCom's unassigned list

Revision ID: c4d2a7e91b3f
Revises: 78516646b35b
Create Date: 2026-12-01 12:15:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c4d2a7e91b3f'
down_revision = '78516646b35b'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('unassigned_customers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('handover_userid', sa.String(length=64), nullable=False),
    sa.Column('external_userid', sa.String(length=64), nullable=False),
    sa.Column('dimission_time', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_unassigned_customers')),
    sa.UniqueConstraint('handover_userid', 'external_userid', name=op.f('uq_unassigned_customers_handover_userid'))
    )
    with op.batch_alter_table('unassigned_customers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_unassigned_customers_handover_userid'), ['handover_userid'], unique=False)

    with op.batch_alter_table('stores', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deletion_alerts', sa.String(length=8), server_default='now', nullable=False))
        batch_op.add_column(sa.Column('handover_after_days', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('handover_to_userid', sa.String(length=64), nullable=True))
    with op.batch_alter_table('handovers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('message', sa.String(length=200), nullable=True))
    with op.batch_alter_table('handover_customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason', sa.String(length=32), nullable=True))
    with op.batch_alter_table('handover_groups', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason', sa.String(length=32), nullable=True))


def downgrade():
    with op.batch_alter_table('unassigned_customers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_unassigned_customers_handover_userid'))
    op.drop_table('unassigned_customers')
    with op.batch_alter_table('handover_groups', schema=None) as batch_op:
        batch_op.drop_column('reason')
    with op.batch_alter_table('handover_customers', schema=None) as batch_op:
        batch_op.drop_column('reason')
    with op.batch_alter_table('handovers', schema=None) as batch_op:
        batch_op.drop_column('message')
    with op.batch_alter_table('stores', schema=None) as batch_op:
        batch_op.drop_column('handover_to_userid')
        batch_op.drop_column('handover_after_days')
        batch_op.drop_column('deletion_alerts')
