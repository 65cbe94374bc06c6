"""users carry a session generation (bumped on sign-out, a new password, deactivation); API tokens an expiry

Revision ID: 872a8a607765
Revises: 31f6aa815fc8
Create Date: 2026-12-01 07:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '872a8a607765'
down_revision = '31f6aa815fc8'
branch_labels = None
depends_on = None


def upgrade():
    # Existing sessions keep a bare user id, which the loader no longer takes: everyone signs in once more.
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), server_default='0', nullable=False))
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_column('expires_at')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('session_version')
