"""orders keep their references as plain columns: no foreign keys checked per imported row

Revision ID: 5e0c7a3b9f12
Revises: 4c8a1f6e2d93
Create Date: 2026-12-01 21:50:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '5e0c7a3b9f12'
down_revision = '4c8a1f6e2d93'
branch_labels = None
depends_on = None

# (column, referenced table, on delete) — what the constraints were
_KEYS = (
    ('customer_id', 'customers', 'SET NULL'),
    ('store_id', 'stores', 'CASCADE'),
    ('staff_id', 'staff', 'SET NULL'),
    ('attributed_staff_id', 'staff', 'SET NULL'),
    ('channel_id', 'channels', 'SET NULL'),
)


def upgrade():
    with op.batch_alter_table('orders', schema=None) as batch_op:
        for column, table, _ in _KEYS:
            batch_op.drop_constraint(batch_op.f(f'fk_orders_{column}_{table}'), type_='foreignkey')


def downgrade():
    with op.batch_alter_table('orders', schema=None) as batch_op:
        for column, table, on_delete in _KEYS:
            batch_op.create_foreign_key(
                batch_op.f(f'fk_orders_{column}_{table}'), table, [column], ['id'], ondelete=on_delete
            )
