"""How PostgreSQL plans the statements that read or rewrite a whole league.

Right after a bulk write, or in a database nothing has analyzed yet (a restored dump, before
autovacuum comes by), the planner has no statistics of the rows: it takes each league's
tables for a handful of rows and joins them in nested loops, each probing a whole table per
row. A statement over a whole league then takes minutes instead of a fraction of a second (the
balances of 3,000 families: over a minute, against 0.1 s; ``bench/bench_fresh_statistics.py``).

Hash joins are right for a whole league whatever the statistics say, so such statements are
planned without nested loops. A statement about a few families is left to the planner: their
rows are found through the indexes either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text

# Up to this many families (named by id: a family's statement, a ledger write), a statement is
# left to the planner: their rows are found through the indexes in a few milliseconds, where
# hash joins would read the whole league's tables.
FEW_FAMILIES = 20


@contextmanager
def without_nested_loops(connection: Connection, *, when: bool = True) -> Iterator[None]:
    """Statements executed inside are planned without nested loops (PostgreSQL, and ``when``);
    the setting is put back as it was, for the rest of the transaction. Elsewhere a no-op.

    A server-side cursor opened inside is planned inside: it may be read after. If a statement
    inside fails, the setting is left to the rollback that must follow (it is the
    transaction's own): putting it back in the failed transaction would fail too, and that
    error would hide the statement's."""
    if not when or connection.dialect.name != "postgresql":
        yield
        return
    before = connection.execute(text("SELECT current_setting('enable_nestloop')")).scalar_one()
    connection.execute(text("SELECT set_config('enable_nestloop', 'off', true)"))
    yield
    connection.execute(text("SELECT set_config('enable_nestloop', :before, true)"), {"before": before})
