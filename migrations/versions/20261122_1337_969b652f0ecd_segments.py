"""segments (customer groups); follow_tags carry their customer, indexed tag-first for tag conditions

Revision ID: 969b652f0ecd
Revises: 99349a460b1f
Create Date: 2026-11-22 13:37:00.214207

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '969b652f0ecd'
down_revision = '99349a460b1f'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('segments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('rule', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_segments_created_by_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_segments'))
    )
    # The customer of each tag's relation, copied once here and on every insert by the model.
    with op.batch_alter_table('follow_tags', schema=None) as batch_op:
        batch_op.add_column(sa.Column('customer_id', sa.Integer(), nullable=True))
    op.execute(
        "UPDATE follow_tags SET customer_id = "
        "(SELECT customer_id FROM follow_relations WHERE follow_relations.id = follow_tags.follow_id)"
    )
    with op.batch_alter_table('follow_tags', schema=None) as batch_op:
        batch_op.alter_column('customer_id', existing_type=sa.Integer(), nullable=False)
        batch_op.create_foreign_key(batch_op.f('fk_follow_tags_customer_id_customers'), 'customers', ['customer_id'], ['id'], ondelete='CASCADE')
        batch_op.create_index('ix_follow_tags_tag_id_customer_id', ['tag_id', 'customer_id'], unique=False)


def downgrade():
    with op.batch_alter_table('follow_tags', schema=None) as batch_op:
        batch_op.drop_index('ix_follow_tags_tag_id_customer_id')
        batch_op.drop_constraint(batch_op.f('fk_follow_tags_customer_id_customers'), type_='foreignkey')
        batch_op.drop_column('customer_id')

    op.drop_table('segments')
