"""customer copy: each customer row carries the change generation of the write that last touched it
(PostgreSQL refuses a write that does not set its writer's current one), SQLite's per-org generation counter,
and the org's columnar copy of its customers (Parquet), dropped when customer rows are removed

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 19:20:00
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

REFUSAL = "a customer row was written without the change generation of its writer (service.storage.customer_copy)"

#: SQLite: removing customer rows (not a path of the service, which anonymises) drops the org's copy
SQLITE_FORGET = """CREATE TRIGGER customer_removed AFTER DELETE ON customer
    BEGIN DELETE FROM customer_copy WHERE org_id = OLD.org_id; END"""

#: PostgreSQL: the generation is the writing transaction's id; checked once per statement over the rows written
POSTGRES_GUARDS = [
    f"""CREATE FUNCTION herald_customer_stamped() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM written WHERE change_gen IS DISTINCT FROM pg_current_xact_id()::text::bigint) THEN
            RAISE EXCEPTION '{REFUSAL}';
        END IF;
        RETURN NULL;
    END $$""",
    *(f"""CREATE TRIGGER customer_stamped_{event.lower()} AFTER {event} ON customer REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION herald_customer_stamped()""" for event in ("INSERT", "UPDATE")),
    """CREATE FUNCTION herald_customer_removed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'TRUNCATE' THEN
            DELETE FROM customer_copy;
        ELSE
            DELETE FROM customer_copy WHERE org_id IN (SELECT org_id FROM removed);
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER customer_removed AFTER DELETE ON customer REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION herald_customer_removed()""",
    """CREATE TRIGGER customer_truncated AFTER TRUNCATE ON customer
    FOR EACH STATEMENT EXECUTE FUNCTION herald_customer_removed()"""]


def upgrade() -> None:
    """Apply this migration."""
    op.create_table('customer_generation',
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('gen', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['org.id'], ),
    sa.PrimaryKeyConstraint('org_id')
    )
    op.create_table('customer_copy',
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('horizon', sa.BigInteger(), nullable=False),
    sa.Column('shape', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('built_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['org.id'], ),
    sa.PrimaryKeyConstraint('org_id')
    )
    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.add_column(sa.Column('change_gen', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.create_index('ix_customer_org_change', ['org_id', 'change_gen'], unique=False)
    # SQLite gets no write guard: an INSERT or UPDATE trigger beside the change_gen index made a bulk upsert of
    # 1M customers 10 s slower (benchmarks/README.md). The PostgreSQL guard checks the same code, as every
    # storage test runs on both databases.
    for statement in [SQLITE_FORGET] if op.get_bind().dialect.name == "sqlite" else POSTGRES_GUARDS:
        op.execute(statement)


def downgrade() -> None:
    """Revert this migration."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    for trigger in ("customer_removed",) if sqlite else ("customer_stamped_insert", "customer_stamped_update",
                                                         "customer_removed", "customer_truncated"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}" + ("" if sqlite else " ON customer"))
    if not sqlite:
        op.execute("DROP FUNCTION IF EXISTS herald_customer_stamped()")
        op.execute("DROP FUNCTION IF EXISTS herald_customer_removed()")
    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.drop_index('ix_customer_org_change')
        batch_op.drop_column('change_gen')
    op.drop_table('customer_copy')
    op.drop_table('customer_generation')
