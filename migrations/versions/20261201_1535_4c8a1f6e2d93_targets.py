"""targets of net adds and sales per store and member, by month or week

Revision ID: 4c8a1f6e2d93
Revises: b7e2c9d41a06
Create Date: 2026-12-01 15:35:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '4c8a1f6e2d93'
down_revision = 'b7e2c9d41a06'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('targets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('owner', sa.String(length=8), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('period', sa.String(length=8), nullable=False),
    sa.Column('start', sa.Date(), nullable=False),
    sa.Column('metric', sa.String(length=12), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.Column('updated_by', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['updated_by'], ['users.id'], name=op.f('fk_targets_updated_by_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_targets')),
    sa.UniqueConstraint('period', 'start', 'owner', 'owner_id', 'metric', name=op.f('uq_targets_period'))
    )


def downgrade():
    op.drop_table('targets')
