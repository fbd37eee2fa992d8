"""folded names stored and indexed for the name search

Search. The balances search folded every joined name (accents and case removed,
``core.reporting.name_search``) on every keystroke: on PostgreSQL a 300-character ``translate``
per row, on SQLite a Python call per row. ``parents.search_name`` and ``players.search_name``
(first name, a space, last name) hold the folded names as generated columns: the database
computes and stores them whenever a row is written, whoever writes it, and fills them for the
rows there are when the column is added. On PostgreSQL each gets a trigram GIN index
(extension ``pg_trgm``, created here if missing) that ``LIKE '%term%'`` can use; on SQLite a
plain index. The folding below is a frozen copy of ``name_search`` as of this revision: a
later change to it needs a migration that adds the columns again.

SQLite cannot add a stored generated column to a table: the tables are rebuilt (batch mode).
Other tables refer to both, so foreign keys are switched off while they are rebuilt (SQLite
would otherwise refuse to drop the old table) and checked afterwards. A later migration that
rebuilds either table on SQLite must drop ``search_name`` first and add it again after (SQLite
refuses to copy rows into a generated column), and switch foreign keys off the same way.

Downgrade drops the indexes and the columns; the ``pg_trgm`` extension stays (other databases
objects may use it, and it changes nothing by being there).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 09:00:00.000000
"""

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

# name_search's folding as of this revision: each accented letter becomes its plain lower-case
# letter, a combining accent (U+0300 to U+036F) is dropped, then everything is lower-cased.
ACCENTED = (
    'ÀÁÂÃÄÅàáâãäåĀāĂăĄąÇçĆćĈĉĊċČčĎďĐđÈÉÊËèéêëĒēĔĕĖėĘęĚěĜĝĞğĠġĢģĤĥĦħÌÍÎÏìíîïĨĩĪīĬĭĮįİ'
    'ĴĵĶķĹĺĻļĽľŁłÑñŃńŅņŇňÒÓÔÕÖØòóôõöøŌōŎŏŐőŔŕŖŗŘřŚśŜŝŞşŠšŢţŤťŦŧÙÚÛÜùúûüŨũŪūŬŭŮůŰűŲų'
    'ŴŵÝýÿŶŷŸŹźŻżŽž'
)
PLAIN = (
    'aaaaaaaaaaaaaaaaaaccccccccccddddeeeeeeeeeeeeeeeeeegggggggghhhhiiiiiiiiiiiiiiiiij'
    'jkkllllllllnnnnnnnnoooooooooooooooooorrrrrrssssssssttttttuuuuuuuuuuuuuuuuuuuu'
    'wwyyyyyyzzzzzz'
)
COMBINING = ''.join(chr(code) for code in range(0x0300, 0x0370))
SQLITE_FUNCTION = 'billing_fold'  # registered on every connection by core.db

NAMES = {'parents': 'name', 'players': "first_name || ' ' || last_name"}


def _folded(expression: str, dialect: str) -> str:
    if dialect == 'postgresql':
        return f"lower(translate({expression}, '{ACCENTED}{COMBINING}', '{PLAIN}'))"
    return f'{SQLITE_FUNCTION}({expression})'


def _search_name(table: str, dialect: str) -> sa.Column:
    return sa.Column('search_name', sa.Text(), sa.Computed(_folded(NAMES[table], dialect), persisted=True),
                     nullable=False)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == 'postgresql':
        _create_pg_trgm()
        for table in NAMES:
            op.add_column(table, _search_name(table, dialect))
    else:
        with _sqlite_foreign_keys_off():
            for table in NAMES:
                with op.batch_alter_table(table, schema=None) as batch_op:
                    batch_op.add_column(_search_name(table, dialect))
    for table in NAMES:
        op.create_index(f'ix_{table}_search_name', table, ['search_name'], unique=False,
                        postgresql_using='gin', postgresql_ops={'search_name': 'gin_trgm_ops'})


def _create_pg_trgm() -> None:
    bind = op.get_bind()
    available = bind.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")).first()
    if available is None:
        raise RuntimeError(
            "PostgreSQL's pg_trgm extension is not installed on the database server; install the server's "
            "contrib extensions (pg_trgm ships with PostgreSQL) and upgrade again"
        )
    op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')


@contextmanager
def _sqlite_foreign_keys_off() -> Iterator[None]:
    """Foreign keys off while tables others refer to are rebuilt; on again and checked after.

    ``PRAGMA foreign_keys`` changes nothing inside a transaction, hence the autocommit blocks.
    """
    context = op.get_context()
    bind = op.get_bind()
    enabled = bool(bind.exec_driver_sql('PRAGMA foreign_keys').scalar())
    with context.autocommit_block():
        op.execute('PRAGMA foreign_keys=OFF')
    try:
        yield
    finally:
        if enabled:
            with context.autocommit_block():
                op.execute('PRAGMA foreign_keys=ON')
    broken = op.get_bind().exec_driver_sql('PRAGMA foreign_key_check').all()
    if broken:
        raise RuntimeError(f"rebuilding the tables broke {len(broken)} foreign keys: {broken[:5]}")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in NAMES:
        op.drop_index(f'ix_{table}_search_name', table_name=table,
                      postgresql_using='gin', postgresql_ops={'search_name': 'gin_trgm_ops'})
    if dialect == 'postgresql':
        for table in NAMES:
            op.drop_column(table, 'search_name')
        return
    with _sqlite_foreign_keys_off():
        for table in NAMES:
            with op.batch_alter_table(table, schema=None) as batch_op:
                batch_op.drop_column('search_name')
