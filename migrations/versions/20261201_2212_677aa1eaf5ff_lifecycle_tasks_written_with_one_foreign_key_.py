"""lifecycle tasks written with one foreign key (the rule's) and four indexes; send recipients marked in place

Revision ID: 677aa1eaf5ff
Revises: 5e0c7a3b9f12
Create Date: 2026-12-01 22:12:00.000000

A rule's first evaluation writes a task per dormant customer (a million); each foreign key cost a trigger per
row, the customer's a row lock on every customer, and three indexes served no query the others do not: the
member's tasks of the last days are read by (staff_id, created_at), those of a rule by the unique key. Send
recipients are marked queued a wave at a time: with half of each page free, the update stays on the page
(a HOT update) instead of writing a new entry in each of the table's five indexes.
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '677aa1eaf5ff'
down_revision = '5e0c7a3b9f12'
branch_labels = None
depends_on = None

DROPPED_KEYS = (
    ('customer_id', 'customers', 'CASCADE'),
    ('staff_id', 'staff', 'SET NULL'),
    ('run_id', 'rule_runs', 'SET NULL'),
    ('send_id', 'mass_sends', 'SET NULL'),
    ('tag_job_id', 'tag_jobs', 'SET NULL'),
)


def upgrade():
    with op.batch_alter_table('lifecycle_tasks', schema=None) as batch_op:
        for column, table, _ in DROPPED_KEYS:
            batch_op.drop_constraint(batch_op.f(f'fk_lifecycle_tasks_{column}_{table}'), type_='foreignkey')
        batch_op.drop_index('ix_lifecycle_tasks_rule_id_created_at')
        batch_op.drop_index(batch_op.f('ix_lifecycle_tasks_created_at'))
        batch_op.drop_index(batch_op.f('ix_lifecycle_tasks_staff_id'))
        batch_op.create_index('ix_lifecycle_tasks_staff_id_created_at', ['staff_id', 'created_at'], unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE send_recipients SET (fillfactor = 50)')  # rows written from now on


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE send_recipients RESET (fillfactor)')
    with op.batch_alter_table('lifecycle_tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_lifecycle_tasks_staff_id_created_at')
        batch_op.create_index(batch_op.f('ix_lifecycle_tasks_staff_id'), ['staff_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_lifecycle_tasks_created_at'), ['created_at'], unique=False)
        batch_op.create_index('ix_lifecycle_tasks_rule_id_created_at', ['rule_id', 'created_at'], unique=False)
        for column, table, ondelete in DROPPED_KEYS:
            batch_op.create_foreign_key(
                batch_op.f(f'fk_lifecycle_tasks_{column}_{table}'), table, [column], ['id'], ondelete=ondelete
            )
