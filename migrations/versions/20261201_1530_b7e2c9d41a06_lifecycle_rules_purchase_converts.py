"""lifecycle rules may count a paid order within the conversion window as converted

Revision ID: b7e2c9d41a06
Revises: 040da26af541
Create Date: 2026-12-01 15:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b7e2c9d41a06'
down_revision = "040da26af541"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('lifecycle_rules', schema=None) as batch_op:
        batch_op.add_column(sa.Column('purchase_converts', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade():
    with op.batch_alter_table('lifecycle_rules', schema=None) as batch_op:
        batch_op.drop_column('purchase_converts')
