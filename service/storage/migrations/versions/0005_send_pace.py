"""send pace: the next free send time of each rate-limited channel or provider, shared by every worker;
audit entries without a user (a recipient's one-click unsubscribe, a provider's unsubscribe report)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 16:20:00
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this migration."""
    op.create_table('send_pace',
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
    sa.Column('next_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.alter_column('actor_id', existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    """Revert this migration."""
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.alter_column('actor_id', existing_type=sa.Integer(), nullable=False)
    op.drop_table('send_pace')
