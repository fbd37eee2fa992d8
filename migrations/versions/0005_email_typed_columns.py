"""email: a campaign's figures in typed columns; a skipped message's reason as an enum

Who is sending (``core.email.senders``): ``email_messages.claimed_by`` records the run that
claimed a message and ``email_campaigns.sender`` the run that queued or resumed a campaign, so
a claim whose run died is known at once instead of after a timeout. Old rows have none (their
claims fall back to the timeout).

``email_campaigns`` gains ``cooldown_days`` (NULL for a test send), ``recipient_count``,
``skipped_count`` and ``total_cents``: the outbox read the cool-down back out of the
``audience`` JSON, and the pages read the figures from it with defaults. Old rows are filled
from their JSON; where it lacks a figure (test sends, which never recorded them), from the
campaign's messages, and the cool-down of a send to everyone that recorded none is the
3 days that were the default then. ``audience`` stays, for display.

``email_messages.skip_reason`` was prose (``"already queued in another send (campaign #12)"``)
that was parsed back to count skips by kind. It becomes the ``email_skip_reason`` enum, and
the campaign it names moves to ``skip_campaign_id``. Old prose is read once, here; prose this
code never wrote can only have been an email type's reason for a family outside its audience,
so it becomes ``nothing_owed``.

SQLite: the new campaign columns are plain ``ADD COLUMN`` (a batch rebuild of
``email_campaigns`` would drop the table, and with foreign keys on that deletes every message
through ``ON DELETE CASCADE``); ``email_messages``, which no table references, is rebuilt in
batch mode for the enum's CHECK constraint and the new foreign key.

Downgrade writes the prose back (with the campaign number and the cool-down's length) and
drops the new columns; the JSON still holds every figure, so the code before 0005 reads them
as it did.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 09:00:00.000000
"""

import re

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# The values and words as of this revision (later code may add reasons; this file must not change).
WORDS = {
    'nothing_owed': 'nothing owed',
    'opted_out': 'opted out of email',
    'no_email': 'no email address',
    'invalid_email': 'email address not valid',
    'payment_processing': 'payment processing',
    'being_emailed': 'being emailed by another send',
    'emailed_within_cool_down': 'emailed within the cool-down',
    'emailed_by_send_in_progress': 'emailed by another send still in progress',
    'queued_elsewhere': 'already queued in another send',
    'emailed_since_queued': 'emailed since this was queued',
    'awaiting_decision': 'may have been emailed by another send: awaiting your decision',
    'paid_since_queued': 'paid since queued',
    'opted_out_since_queued': 'opted out since queued',
    'processing_since_queued': 'payment processing since queued',
    'balance_changed': 'balance changed since queued — start a new send',
    'address_changed': 'email address changed since queued — start a new send',
}
SKIP_REASON = sa.Enum(*WORDS, name='email_skip_reason', create_constraint=True)
KIND_OF_WORDS = {words: kind for kind, words in WORDS.items()}
WITH_CAMPAIGN = re.compile(r'^(?P<words>.*) \(campaign #(?P<campaign>\d+)\)$')
COOL_DOWN = re.compile(r'^emailed within the (\d+-day )?cool-down$')
DEFAULT_COOLDOWN_DAYS_BEFORE_0005 = 3
FK_SKIP_CAMPAIGN = 'fk_email_messages_skip_campaign_id_email_campaigns'

campaigns = sa.table(
    'email_campaigns',
    sa.column('id', sa.Integer), sa.column('audience', sa.JSON), sa.column('test_address', sa.String),
    sa.column('cooldown_days', sa.Integer), sa.column('recipient_count', sa.Integer),
    sa.column('skipped_count', sa.Integer), sa.column('total_cents', sa.Integer),
)
messages = sa.table(
    'email_messages',
    sa.column('id', sa.Integer), sa.column('campaign_id', sa.Integer), sa.column('status', sa.String),
    sa.column('attempts', sa.Integer), sa.column('amount_cents', sa.Integer),
    sa.column('skip_reason', sa.String), sa.column('skip_campaign_id', sa.Integer),
)


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == 'postgresql'
    op.add_column('email_campaigns', sa.Column('cooldown_days', sa.Integer(), nullable=True))
    op.add_column('email_campaigns', sa.Column('sender', sa.String(length=200), nullable=True))
    for name in ('recipient_count', 'skipped_count', 'total_cents'):
        op.add_column('email_campaigns', sa.Column(name, sa.Integer(), server_default=sa.text('0'), nullable=False))
    _fill_campaign_figures()

    op.add_column('email_messages', sa.Column('skip_campaign_id', sa.Integer(), nullable=True))
    op.add_column('email_messages', sa.Column('claimed_by', sa.String(length=200), nullable=True))
    _reasons_to_kinds()
    if postgresql:
        SKIP_REASON.create(op.get_bind(), checkfirst=True)
    with op.batch_alter_table('email_messages', schema=None) as batch_op:
        batch_op.alter_column('skip_reason', existing_type=sa.String(length=200), type_=SKIP_REASON,
                              existing_nullable=True, postgresql_using='skip_reason::email_skip_reason')
        batch_op.create_foreign_key(FK_SKIP_CAMPAIGN, 'email_campaigns', ['skip_campaign_id'], ['id'],
                                    ondelete='SET NULL')


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == 'postgresql'
    with op.batch_alter_table('email_messages', schema=None) as batch_op:
        batch_op.alter_column('skip_reason', existing_type=SKIP_REASON, type_=sa.String(length=200),
                              existing_nullable=True, postgresql_using='skip_reason::text')
    if postgresql:
        SKIP_REASON.drop(op.get_bind(), checkfirst=True)
    _kinds_to_reasons()
    with op.batch_alter_table('email_messages', schema=None) as batch_op:
        batch_op.drop_constraint(FK_SKIP_CAMPAIGN, type_='foreignkey')
        batch_op.drop_column('skip_campaign_id')
        batch_op.drop_column('claimed_by')
    # Plain DROP COLUMN on SQLite too (3.35+): a batch rebuild of email_campaigns would cascade.
    for name in ('sender', 'total_cents', 'skipped_count', 'recipient_count', 'cooldown_days'):
        op.drop_column('email_campaigns', name)


def _fill_campaign_figures() -> None:
    bind = op.get_bind()
    # (status is an enum on PostgreSQL: compared as text)
    queued_skip = sa.and_(sa.cast(messages.c.status, sa.String) == 'skipped', messages.c.attempts == 0)
    figures = {
        campaign_id: (int(queued or 0), int(skipped or 0), int(total or 0))
        for campaign_id, queued, skipped, total in bind.execute(
            sa.select(
                messages.c.campaign_id,
                sa.func.sum(sa.case((queued_skip, 0), else_=1)),
                sa.func.sum(sa.case((queued_skip, 1), else_=0)),
                sa.func.sum(sa.case((queued_skip, 0), else_=messages.c.amount_cents)),
            ).group_by(messages.c.campaign_id)
        )
    }
    for campaign_id, audience, test_address in bind.execute(
        sa.select(campaigns.c.id, campaigns.c.audience, campaigns.c.test_address)
    ).all():
        audience = audience if isinstance(audience, dict) else {}
        queued, skipped, total = figures.get(campaign_id, (0, 0, 0))
        cooldown = None if test_address is not None else _whole(
            audience.get('cooldown_days'), DEFAULT_COOLDOWN_DAYS_BEFORE_0005
        )
        bind.execute(
            campaigns.update().where(campaigns.c.id == campaign_id).values(
                cooldown_days=cooldown,
                recipient_count=_whole(audience.get('recipients'), queued),
                skipped_count=_whole(audience.get('skipped'), skipped),
                total_cents=_whole(audience.get('total_cents'), total),
            )
        )


def _whole(value: object, otherwise: int) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return otherwise


def _reasons_to_kinds() -> None:
    bind = op.get_bind()
    existing = set(bind.execute(sa.select(campaigns.c.id)).scalars())
    rows = bind.execute(
        sa.select(messages.c.id, messages.c.skip_reason).where(messages.c.skip_reason.is_not(None))
    ).all()
    updates = []
    for message_id, prose in rows:
        kind, campaign_id = _kind_of(prose)
        updates.append({'message_id': message_id, 'kind': kind,
                        'campaign': campaign_id if campaign_id in existing else None})
    if updates:
        bind.execute(
            messages.update().where(messages.c.id == sa.bindparam('message_id'))
            .values(skip_reason=sa.bindparam('kind'), skip_campaign_id=sa.bindparam('campaign')),
            updates,
        )


def _kind_of(prose: str) -> tuple[str, int | None]:
    words, campaign_id = prose.strip(), None
    match = WITH_CAMPAIGN.match(words)
    if match:
        words, campaign_id = match['words'], int(match['campaign'])
    if COOL_DOWN.match(words):
        return 'emailed_within_cool_down', campaign_id
    return KIND_OF_WORDS.get(words, 'nothing_owed'), campaign_id


def _kinds_to_reasons() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(messages.c.id, messages.c.skip_reason, messages.c.skip_campaign_id, campaigns.c.cooldown_days)
        .join(campaigns, campaigns.c.id == messages.c.campaign_id)
        .where(messages.c.skip_reason.is_not(None))
    ).all()
    updates = []
    for message_id, kind, campaign_id, cooldown_days in rows:
        words = WORDS.get(kind, kind)
        if kind == 'emailed_within_cool_down' and cooldown_days is not None:
            words = f'emailed within the {cooldown_days}-day cool-down'
        if campaign_id is not None:
            words = f'{words} (campaign #{campaign_id})'
        updates.append({'message_id': message_id, 'prose': words[:200]})
    if updates:
        bind.execute(
            messages.update().where(messages.c.id == sa.bindparam('message_id'))
            .values(skip_reason=sa.bindparam('prose')),
            updates,
        )
