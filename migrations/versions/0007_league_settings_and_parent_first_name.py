"""per-league settings (sender address, thank-you page, time zone, cool-down) and a parent's first name

A league's non-secret settings were read only from the environment, so one server could hold
one league's sender address and thank-you page. Each becomes a nullable column of
``tenants``: NULL means "as the environment (or the built-in default) says", which is what
every existing league gets. ``parents.first_name`` holds the optional ``parent_first_name``
of the players file, so an email can greet "Hi Jennifer" rather than "Hi Smith, Jennifer".

These columns only add to the tables (nothing reads another branch's columns), so the
migration is independent of its neighbours. Downgrade drops them: the values are settings an
admin can type again, and the roster's next import fills ``first_name`` again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 09:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_TENANT_COLUMNS = (
    ('sender_address', sa.String(length=320)),
    ('payment_success_url', sa.String(length=1000)),
    ('time_zone', sa.String(length=64)),
    ('email_cooldown_days', sa.Integer()),
)


# Plain ALTER TABLE, not batch mode: SQLite adds and (since 3.35) drops a nullable column in
# place, while batch mode would copy ``tenants`` and ``parents``, which other tables refer to.


def upgrade() -> None:
    for name, column_type in _TENANT_COLUMNS:
        op.add_column('tenants', sa.Column(name, column_type, nullable=True))
    op.add_column('parents', sa.Column('first_name', sa.String(length=100), nullable=True))


def downgrade() -> None:
    op.drop_column('parents', 'first_name')
    for name, _ in reversed(_TENANT_COLUMNS):
        op.drop_column('tenants', name)
