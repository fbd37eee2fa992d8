"""The permission matrix: every service function in ``core`` × every kind of caller.

Callers: a coach (of one of the league's two teams), the treasurer, the admin, nobody
(``None``), and the admin of *another* league calling with this league's ids. For each
(function, caller) the test asserts the call is refused with ``PermissionDenied`` — and
changed nothing in either league — or allowed, and then that the caller saw only what
they may: a coach only their own team and no parent email address; the other league's
admin nothing of this league, and changed nothing in it.

What each role may do is written out below from the roles table of the architecture
brief, not read from ``core.access.permissions``, so that removing any single ``require`` (or
granting a role too much) makes a case fail.

Adding a service function: add one ``Call`` row to ``CALLS``. ``test_every_service_function_is_in_the_matrix``
fails until you do.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import core
from core.access.league_settings import LeagueSettings, current_league_settings, update_league_settings
from core.access.permissions import ActingUser, Permission, Role
from core.audit import audit_filter_choices, list_audit_entries, record_action
from core.backfill import plan_backfill
from core.email.campaigns import (
    build_manifest,
    campaign_messages,
    campaign_summaries,
    get_message,
    list_campaigns,
    message_rows,
    parents_to_email,
    preview_email,
    start_campaign,
    unfinished_campaigns,
)
from core.email.opt_out import set_email_opt_out
from core.email.outbox import interrupt_dead_claims, retry_messages, settle_interrupted
from core.email.payment_received import preview_receipt
from core.email.presend import sync_payments_first
from core.email.registry import OUTSTANDING_BALANCE, everyone_who_owes
from core.email.sending import campaign_report, prepare_send_to_everyone
from core.errors import NotFound, PermissionDenied
from core.ledger.billing import attach_link, bill_owed, league_charges
from core.ledger.entries import record_adjustment, record_charge, record_payment, reverse_entry
from core.ledger.positions import bring_up_to_date
from core.ledger.receipts import payment_receipt
from core.ledger.refunds import record_lost_dispute, record_stripe_refund, refund_payment
from core.ledger.statement import family_statement, statement_csv
from core.ledger.stripe_payments import follow_family_checkout, follow_stripe_link
from core.models import (
    AdjustmentKind,
    Base,
    Charge,
    FlagKind,
    Parent,
    Payment,
    PaymentFlag,
    PaymentLink,
    PaymentMethod,
    Player,
    Product,
    Tenant,
)
from core.payments.events import open_disputes
from core.payments.flags import payment_flags
from core.payments.gateway import CompletedCheckout
from core.payments.ledger_check import ledger_stripe_payments
from core.payments.sync import sync_payments
from core.reporting.audit_export import audit_log_csv
from core.reporting.balances import (
    BalanceFilter,
    balance_summary,
    family_page,
    family_ranking,
    iter_outstanding_balances,
    outstanding_balances,
    outstanding_rows,
    owed_by,
    summarise,
)
from core.reporting.directory import families_named, find_parent, league_of, league_products, visible_teams
from core.reporting.export import ExportKind, balances_csv_chunks, export_balances_csv, record_balances_export
from core.roster.importing import import_roster
from core.settings import Settings
from core.setup.checklist import check_email_connection, next_setup_steps, setup_checklist
from tests.factories import acting, make_link, make_parent, make_player, make_product, make_team, make_tenant

P = Permission

# What each caller may do: the roles table of ARCHITECTURE.md.
MAY: dict[str, frozenset[Permission]] = {
    "coach": frozenset({P.VIEW_LEAGUE, P.VIEW_BALANCES}),
    "treasurer": frozenset({P.VIEW_LEAGUE, P.VIEW_BALANCES, P.VIEW_CONTACT_DETAILS, P.EXPORT_BALANCES,
                            P.SYNC_PAYMENTS,
                            # The ledger (issue 11): the treasurer keeps the books.
                            P.VIEW_LEDGER, P.RECORD_CHARGES, P.RECORD_PAYMENTS, P.ADJUST_BALANCES,
                            P.REFUND_PAYMENTS, P.REVERSE_ENTRIES, P.SEND_RECEIPTS}),
    "admin": frozenset(Permission),
    "nobody": frozenset(),
    "other league's admin": frozenset(Permission),
}
CALLERS = tuple(MAY)

# Text (compared in lower case) that marks this league's data, the coach's other team, and
# parents' addresses.
LEAGUE_MARK = "alpha"
OTHER_TEAM_MARK = "zulu"
PARENT_EMAILS = ("own.parent@alpha.example", "zulu.parent@alpha.example")


@dataclass
class World:
    """Two leagues; the matrix acts on the first ("Alpha") with ids taken from it."""

    tenant: Tenant
    own_team_id: int
    other_team_id: int
    parent_ids: frozenset[int]
    product_ids: frozenset[int]
    callers: dict[str, ActingUser | None]

    other_tenant_id: int

    @property
    def team_ids(self) -> frozenset[int]:
        return frozenset({self.own_team_id, self.other_team_id})

    @property
    def tenant_ids(self) -> tuple[int, int]:
        return (self.tenant.id, self.other_tenant_id)


@dataclass(frozen=True)
class Call:
    """One service function called the way a page or a crafted request would call it."""

    name: str
    function: Callable[..., Any]
    permission: Permission
    run: Callable[[Session, ActingUser | None, World], Any]
    # False for a function that changes data and returns a report rather than the league's
    # data: then an allowed caller's result is not expected to show the league's name.
    returns_league_data: bool = True


CALLS: tuple[Call, ...] = (
    Call("outstanding_balances", outstanding_balances, P.VIEW_BALANCES,
         lambda s, u, w: outstanding_balances(s, u, BalanceFilter(team_ids=w.team_ids, parent_ids=w.parent_ids))),
    Call("outstanding_balances by parent email", outstanding_balances, P.VIEW_CONTACT_DETAILS,
         lambda s, u, w: outstanding_balances(s, u, BalanceFilter(parent_email=PARENT_EMAILS[0]))),
    Call("visible_teams", visible_teams, P.VIEW_BALANCES, lambda s, u, w: visible_teams(s, u)),
    Call("league_products", league_products, P.VIEW_BALANCES, lambda s, u, w: league_products(s, u)),
    Call("find_parent", find_parent, P.VIEW_CONTACT_DETAILS,
         lambda s, u, w: _found_or_none(lambda: find_parent(s, u, PARENT_EMAILS[0]))),
    Call("league_of", league_of, P.VIEW_LEAGUE, lambda s, u, w: league_of(s, u)),
    Call("iter_outstanding_balances", iter_outstanding_balances, P.VIEW_BALANCES,
         lambda s, u, w: list(iter_outstanding_balances(s, u, BalanceFilter(team_ids=w.team_ids)))),
    # Ids and figures: shown through the families' names, which must all be the caller's league's.
    Call("family_ranking", family_ranking, P.VIEW_BALANCES,
         lambda s, u, w: [s.get(Parent, parent_id).name
                          for parent_id in family_ranking(s, u, BalanceFilter(team_ids=w.team_ids)).parent_ids]),
    Call("outstanding_rows", outstanding_rows, P.VIEW_BALANCES,
         lambda s, u, w: s.execute(outstanding_rows(u, BalanceFilter(team_ids=w.team_ids),
                                                    lambda c: [c.parent_name, c.owed_cents])).all()),
    # Headline figures only: no names in them, so nothing of the league's to see.
    Call("balance_summary", balance_summary, P.VIEW_BALANCES, lambda s, u, w: balance_summary(s, u),
         returns_league_data=False),
    Call("family_page", family_page, P.VIEW_BALANCES,
         lambda s, u, w: family_page(s, u, BalanceFilter(team_ids=w.team_ids), limit=100)),
    Call("owed_by team", owed_by, P.VIEW_BALANCES, lambda s, u, w: owed_by(s, u, BalanceFilter()),
         returns_league_data=False),
    Call("balances_csv_chunks", balances_csv_chunks, P.EXPORT_BALANCES,
         lambda s, u, w: b"".join(balances_csv_chunks(s, u, kind=ExportKind.PARENTS))),
    Call("export_balances_csv line items", export_balances_csv, P.EXPORT_BALANCES,
         lambda s, u, w: export_balances_csv(s, u, BalanceFilter(product_ids=w.product_ids))),
    Call("export_balances_csv per parent", export_balances_csv, P.EXPORT_BALANCES,
         lambda s, u, w: export_balances_csv(s, u, kind=ExportKind.PARENTS)),
    Call("list_audit_entries", list_audit_entries, P.VIEW_AUDIT_LOG, lambda s, u, w: list_audit_entries(s, u)),
    Call("audit_filter_choices", audit_filter_choices, P.VIEW_AUDIT_LOG,
         lambda s, u, w: audit_filter_choices(s, u)),
    Call("audit_log_csv", audit_log_csv, P.VIEW_AUDIT_LOG, lambda s, u, w: audit_log_csv(s, u)),
    Call("plan_backfill", plan_backfill, P.MINT_LINKS, lambda s, u, w: plan_backfill(s, u)),
    Call("record_balances_export", record_balances_export, P.EXPORT_BALANCES,
         lambda s, u, w: record_balances_export(s, u, summarise([]), kind=ExportKind.LINE_ITEMS), returns_league_data=False),
    Call("current_league_settings", current_league_settings, P.MANAGE_LEAGUE,
         lambda s, u, w: current_league_settings(s, u), returns_league_data=True),
    Call("update_league_settings", update_league_settings, P.MANAGE_LEAGUE,
         lambda s, u, w: update_league_settings(s, u, LeagueSettings(footer_text="A changed footer")),
         returns_league_data=True),
    Call("setup_checklist", setup_checklist, P.MANAGE_LEAGUE,
         lambda s, u, w: setup_checklist(s, u, Settings()), returns_league_data=False),
    Call("next_setup_steps", next_setup_steps, P.IMPORT_ROSTER,
         lambda s, u, w: next_setup_steps(s, u), returns_league_data=False),
    Call("check_email_connection", check_email_connection, P.MANAGE_LEAGUE,
         lambda s, u, w: check_email_connection(u, _NothingToCheck()), returns_league_data=False),
    Call("set_email_opt_out", set_email_opt_out, P.MANAGE_EMAIL_PREFERENCES,
         lambda s, u, w: _found_or_none(lambda: set_email_opt_out(s, u, min(w.parent_ids), opted_out=True))),
    Call("import_roster", import_roster, P.IMPORT_ROSTER,
         lambda s, u, w: import_roster(s, u, ROSTER_CSV_BYTES, commit=True, file_name="players.csv"),
         returns_league_data=False),
    # Email: reads run as they are; the ones that need a campaign start one first (SEND_EMAIL,
    # which only the admin has, like PREVIEW_EMAIL), in the matrix's savepoint.
    Call("everyone_who_owes", everyone_who_owes, P.VIEW_BALANCES, lambda s, u, w: everyone_who_owes(s, u)),
    Call("parents_to_email", parents_to_email, P.PREVIEW_EMAIL,
         lambda s, u, w: parents_to_email(s, u, OUTSTANDING_BALANCE)),
    Call("build_manifest", build_manifest, P.PREVIEW_EMAIL,
         lambda s, u, w: build_manifest(s, u, OUTSTANDING_BALANCE)),
    Call("preview_email", preview_email, P.PREVIEW_EMAIL,
         lambda s, u, w: preview_email(s, u, parent_id=parents_to_email(s, u, OUTSTANDING_BALANCE)[0].parent_id,
                                       email_type=OUTSTANDING_BALANCE, email_from=EMAIL_FROM)),
    Call("sync_payments_first", sync_payments_first, P.SEND_EMAIL,
         lambda s, u, w: sync_payments_first(_joined_sessions(s), u, gateway=None),
         returns_league_data=False),
    Call("prepare_send_to_everyone", prepare_send_to_everyone, P.SEND_EMAIL,
         lambda s, u, w: prepare_send_to_everyone(_joined_sessions(s), u, OUTSTANDING_BALANCE, cooldown_days=3,
                                                  gateway=None, backend_problem=lambda: None)),
    Call("start_campaign", start_campaign, P.SEND_EMAIL, lambda s, u, w: _campaign(s, u), returns_league_data=False),
    Call("retry_messages", retry_messages, P.SEND_EMAIL,
         lambda s, u, w: retry_messages(s, u, _campaign(s, u).id), returns_league_data=False),
    Call("settle_interrupted", settle_interrupted, P.SEND_EMAIL,
         lambda s, u, w: settle_interrupted(s, u, _campaign(s, u).id), returns_league_data=False),
    Call("interrupt_dead_claims", interrupt_dead_claims, P.SEND_EMAIL,
         lambda s, u, w: interrupt_dead_claims(s, u), returns_league_data=False),
    Call("list_campaigns", list_campaigns, P.SEND_EMAIL,
         lambda s, u, w: (_campaign(s, u), list_campaigns(s, u))[1], returns_league_data=False),
    Call("campaign_summaries", campaign_summaries, P.SEND_EMAIL,
         lambda s, u, w: (_campaign(s, u), campaign_summaries(s, u))[1], returns_league_data=False),
    Call("campaign_messages", campaign_messages, P.SEND_EMAIL,
         lambda s, u, w: campaign_messages(s, u, _campaign(s, u).id)),
    Call("message_rows", message_rows, P.SEND_EMAIL, lambda s, u, w: message_rows(s, u, _campaign(s, u).id)),
    Call("campaign_report", campaign_report, P.SEND_EMAIL,
         lambda s, u, w: campaign_report(s, u, _campaign(s, u).id)),
    Call("unfinished_campaigns", unfinished_campaigns, P.SEND_EMAIL,
         lambda s, u, w: (_campaign(s, u), unfinished_campaigns(s, u))[1], returns_league_data=False),
    Call("get_message", get_message, P.SEND_EMAIL,
         lambda s, u, w: get_message(s, u, campaign_messages(s, u, _campaign(s, u).id)[0].id)),
    Call("sync_payments", sync_payments, P.SYNC_PAYMENTS,
         lambda s, u, w: sync_payments(_joined_sessions(s), u, NoPaymentsYet()), returns_league_data=False),
    Call("payment_flags", payment_flags, P.SYNC_PAYMENTS, lambda s, u, w: payment_flags(s, u)),
    # The ledger: treasurer and admin; a coach sees balances, never a statement.
    Call("record_charge", record_charge, P.RECORD_CHARGES,
         lambda s, u, w: _found_or_none(lambda: record_charge(s, u, parent_id=_own_parent(w), amount_cents=500,
                                                              description="Alpha late fee"))),
    Call("record_payment", record_payment, P.RECORD_PAYMENTS,
         lambda s, u, w: _found_or_none(lambda: record_payment(s, u, parent_id=_own_parent(w), amount_cents=500,
                                                               method=PaymentMethod.CASH))),
    Call("record_adjustment", record_adjustment, P.ADJUST_BALANCES,
         lambda s, u, w: _found_or_none(lambda: record_adjustment(s, u, parent_id=_own_parent(w), amount_cents=500,
                                                                  kind=AdjustmentKind.DISCOUNT, reason="sibling"))),
    Call("reverse_entry", reverse_entry, P.REVERSE_ENTRIES,
         lambda s, u, w: _found_or_none(lambda: reverse_entry(s, u, entry_id=_own_charge(s, w), reason="error"))),
    Call("refund_payment", refund_payment, P.REFUND_PAYMENTS,
         lambda s, u, w: _found_or_none(lambda: refund_payment(
             s, u, payment_id=record_payment(s, u, parent_id=_own_parent(w), amount_cents=500,
                                             method=PaymentMethod.CASH).entry_id,
             amount_cents=500, reason="paid twice"))),
    Call("record_stripe_refund", record_stripe_refund, P.SYNC_PAYMENTS,
         lambda s, u, w: _found_or_none(lambda: record_stripe_refund(
             s, u, payment_id=_zulu_payment(s, w), stripe_refund_id="re_matrix", amount_cents=100,
             reason="refunded in Stripe"))),
    Call("record_lost_dispute", record_lost_dispute, P.SYNC_PAYMENTS,
         lambda s, u, w: _found_or_none(lambda: record_lost_dispute(
             s, u, payment_id=_zulu_payment(s, w), dispute_id="dp_matrix", amount_cents=100))),
    Call("ledger_stripe_payments", ledger_stripe_payments, P.SYNC_PAYMENTS,
         lambda s, u, w: ledger_stripe_payments(s, u), returns_league_data=False),
    Call("open_disputes", open_disputes, P.SYNC_PAYMENTS,
         lambda s, u, w: [d for parent_id in sorted(w.parent_ids) for d in open_disputes(s, u, parent_id=parent_id)]),
    Call("payment_receipt", payment_receipt, P.VIEW_LEDGER,
         lambda s, u, w: _found_or_none(lambda: payment_receipt(s, u, _zulu_payment(s, w)))),
    Call("preview_receipt", preview_receipt, P.SEND_RECEIPTS,
         lambda s, u, w: _found_or_none(lambda: preview_receipt(s, u, payment_id=_zulu_payment(s, w),
                                                                email_from="league@alpha.example"))),
    Call("families_named", families_named, P.VIEW_LEDGER, lambda s, u, w: families_named(s, u, "alpha")),
    Call("family_statement", family_statement, P.VIEW_LEDGER,
         lambda s, u, w: _found_or_none(lambda: family_statement(s, u, _own_parent(w)))),
    Call("statement_csv", statement_csv, P.VIEW_LEDGER,
         lambda s, u, w: _found_or_none(lambda: statement_csv(s, u, _own_parent(w)))),
    Call("follow_stripe_link", follow_stripe_link, P.SYNC_PAYMENTS,
         lambda s, u, w: _found_or_none(lambda: follow_stripe_link(s, u, _own_link(s, w), [])),
         returns_league_data=False),
    Call("follow_family_checkout", follow_family_checkout, P.SYNC_PAYMENTS,
         lambda s, u, w: follow_family_checkout(s, u, CompletedCheckout(
             id="cs_nobody", payment_link_id="plink_nobody", payment_status="paid", amount_total=100,
             currency="usd", created=datetime(2026, 1, 1, tzinfo=UTC))),
         returns_league_data=False),
    Call("league_charges", league_charges, P.MINT_LINKS, lambda s, u, w: league_charges(s, u),
         returns_league_data=False),
    Call("bill_owed", bill_owed, P.MINT_LINKS, lambda s, u, w: bill_owed(s, u, []), returns_league_data=False),
    Call("attach_link", attach_link, P.MINT_LINKS,
         lambda s, u, w: _found_or_none(lambda: attach_link(s, u, _own_link(s, w))), returns_league_data=False),
)


def _own_parent(world: World) -> int:
    return min(world.parent_ids)  # "Alpha Own Parent", made first


def _own_charge(session: Session, world: World) -> int:
    return session.scalars(select(Charge.id).where(Charge.parent_id == _own_parent(world))).one()


def _zulu_payment(session: Session, world: World) -> int:
    return session.scalars(select(Payment.id).where(Payment.parent_id == max(world.parent_ids))).one()


def _own_link(session: Session, world: World) -> PaymentLink:
    return session.scalars(
        select(PaymentLink).join(Player, Player.id == PaymentLink.player_id).where(Player.parent_id == _own_parent(world))
    ).one()

ROSTER_CSV_BYTES = (
    b"player_ref,first_name,last_name,status,team,parent_ref,parent_name,parent_email\r\n"
    b"K-NEW,Nia,Alphakid,signed,Alpha Own Team,P-NEW,Alpha New Parent,new.parent@alpha.example\r\n"
)


EMAIL_FROM = "Treasurer <treasurer@league.example>"


def _found_or_none(lookup: Callable[[], Any]) -> Any:
    """A lookup's result; None when it finds nothing (another league's admin looking up this one's)."""
    try:
        return lookup()
    except NotFound:
        return None


def _campaign(session: Session, user: ActingUser | None) -> Any:
    campaign = start_campaign(session, user, OUTSTANDING_BALANCE, email_from=EMAIL_FROM)  # type: ignore[arg-type]
    session.flush()
    return campaign


# Service functions that commit as they go (durable per item) and are not run inside the
# matrix's savepoints (sync_payments is, through ``_joined_sessions``); each has its own refusal
# tests, named here.
COMMITTING_SERVICE_FUNCTIONS: dict[str, str] = {
    "core.backfill.commit.commit_backfill": "tests/core/test_backfill.py: coach, treasurer and another league's plan",
    "core.email.campaigns.send_test_email": "tests/core/email/test_outbox.py::test_only_an_admin_may_send",
    "core.email.campaigns.run_campaign": "tests/core/email/test_outbox.py::test_only_an_admin_may_send",
    "core.email.outbox.drain_outbox": "tests/core/email/test_outbox.py::test_only_an_admin_may_send",
    "core.email.sending.send_prepared": "tests/core/email/test_sending.py::test_only_an_admin_may_run_a_send_workflow",
    "core.email.sending.send_test": "tests/core/email/test_sending.py::test_only_an_admin_may_run_a_send_workflow",
    "core.email.sending.resume_campaign": "tests/core/email/test_sending.py::test_only_an_admin_may_run_a_send_workflow",
    "core.email.sending.record_decisions": "tests/core/email/test_sending.py::test_only_an_admin_may_run_a_send_workflow",
    "core.ledger.refunds.run_refund": "tests/core/ledger/test_refunds.py::test_only_who_refunds_may_run_a_refund",
    "core.ledger.links.switch_off_retired_links":
        "tests/core/ledger/test_links_follow_charges.py::test_only_who_records_payments_may_switch_links_off",
    "core.email.payment_received.send_receipt":
        "tests/core/ledger/test_receipt_email.py::test_only_who_records_payments_may_send_a_receipt",
    "core.payments.family_links.refresh_family_links":
        "tests/core/test_family_links.py::test_only_an_admin_mints_balance_links",
    "core.ledger.workflows.apply_ledger_change":
        "tests/core/ledger/test_links_follow_charges.py::test_a_coach_cannot_apply_a_ledger_change",
}


class _NothingToCheck:
    """An email backend whose connection check always passes and touches nothing."""

    def check(self) -> str:
        return "checked"


class NoPaymentsYet:
    """A payment gateway with no completed checkout yet; any other call is a failure."""

    def list_completed_checkout_sessions(self, **_: object) -> Iterable[Any]:
        return iter(())

    def list_events(self, **_: object) -> Iterable[Any]:
        return iter(())

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the sync was not expected to call {name}")


def _joined_sessions(session: Session) -> sessionmaker[Session]:
    """A session factory whose sessions join the test's transaction, for functions that commit
    per item: their commits release a savepoint, and the matrix still rolls every caller back."""
    return sessionmaker(bind=session.connection(), join_transaction_mode="create_savepoint")


# Public functions that take the acting user but are not service functions of their own.
NOT_SERVICE_FUNCTIONS: dict[str, str] = {
    "core.access.permissions.require": "is the check itself",
    "core.access.permissions.find_in_league": "a lookup for service functions, called after their own require",
    "core.audit.record_action": "writes the audit row of a service function, after that function's require",
    "core.audit.entries_statement": "builds the audit log query for service functions; runs nothing",
    "core.payments.flags.record_flag": "records a flag for payment sync, after its require",
    **{f"core.payments.links.{name}": "a payment link's transition, called by service functions after their require"
       for name in ("reserve", "drop_reservations", "activate", "lose_the_pair", "mark_paid", "retire",
                    "links_awaiting_switch_off", "switch_off", "locked_link")},
    **{f"core.payments.family_links.{name}": "a family link's transition, called by service functions after "
                                              "their require"
       for name in ("reserve", "drop_reservation", "activate", "retire", "locked", "family_link_by_stripe_id")},
    "core.backfill.plan.follow_the_ledger": "part of plan_backfill, after its require",
    "core.backfill.billing.bill_plan": "commit_backfill's first step, after its require",
    "core.ledger.accounts.family_account": "reads one family for the ledger's services, after their require",
    "core.ledger.accounts.settled_by_payment": "reads one payment for refund_payment, after its require",
    "core.ledger.accounts.lock_family": "locks one family for the ledger's services, after their require",
    "core.ledger.accounts.stripe_payment_by_reference": "a lookup for follow_stripe_link, after its require",
    "core.ledger.accounts.families_with_credit": "a lookup for bill_owed, after its require",
    "core.ledger.links.retire_unmatched_links": "part of every ledger write, after the write's require",
    "core.ledger.entries.league_today": "the league's calendar day (reads only its time zone), for writes after their require",
    "core.backfill.plan.forecast_family_links": "part of plan_backfill's dry run, after its require (its balances require again)",
    "core.email.registry.nobody": "the empty audience of the receipt email; reads nothing",
    "core.reporting.balances.balance_view": "what of the balances a user sees (the dashboard shares its figures by "
                                            "it); reads nothing",
    **{f"core.payments.events.{name}": "payment sync's reading of Stripe's events, after its require"
       for name in ("read_cursor", "advance_cursor", "unseen", "mark_seen", "failed_sessions", "apply_refunds",
                    "apply_dispute", "forget_old_events", "sessions_of_payment_intents")},
}
# Public functions that read the database without an acting user: they run before anyone
# acts (sign-in, choosing a league) or are the operator's bootstrap from the command line.
BEFORE_ANYONE_ACTS: dict[str, str] = {
    "core.reporting.directory.list_leagues": "the demo sign-in's league picker",
    "core.reporting.directory.league_teams": "the demo sign-in's team picker",
    "core.access.roles.league_access_for": "OIDC sign-in: decides who the user is",
    "core.demo.build_demo_league": "creates the demo league (CLI, and the empty-database page in demo mode)",
    "core.access.leagues.find_tenant": "the CLI's --tenant option",
    "core.access.leagues.find_or_create_tenant": "the CLI's first import",
    "core.access.leagues.list_tenant_slugs": "the CLI's error messages",
    "core.setup.database_file.holds_demo_league": "the CLI's note that it runs on the demo league, before acting",
    "core.access.league_settings.create_first_league": "the first run: names the league of an empty database "
                                                       "(refused once any league exists)",
    "core.db.analyze_after_commit": "database upkeep after a caller's commit (the import's); reads no league's data",
    "core.ledger.positions.mark_written": "database upkeep: notes families a bulk write changed, in its transaction",
    "core.ledger.positions.bring_up_to_date": "database upkeep: stores the positions of what the session wrote "
                                              "(before its commit, and before the balances read)",
    "core.ledger.positions.rebuild_positions": "database upkeep: a benchmark's ledger written in SQL",
    "core.ledger.positions.position_differences": "a check of the stored positions against the ledger (tests)",
    "core.reporting.balances.read_balances": "database upkeep: executes a statement built with the acting user, "
                                             "once the session's positions are stored",
}


def build_world(session: Session) -> World:
    alpha = make_tenant(session, "alpha", name="Alpha League")
    own_team, zulu_team = make_team(session, alpha, "Alpha Own Team"), make_team(session, alpha, "Alpha Zulu Team")
    registration = make_product(session, alpha, "Alpha Registration")
    own_parent = make_parent(session, alpha, "Alpha Own Parent", email=PARENT_EMAILS[0])
    zulu_parent = make_parent(session, alpha, "Alpha Zulu Parent", email=PARENT_EMAILS[1])
    make_link(session, alpha, make_player(session, alpha, own_parent, own_team, first_name="Own",
                                          last_name="Alphakid"), registration)
    zulu_link = make_link(session, alpha, make_player(session, alpha, zulu_parent, zulu_team, first_name="Zulu",
                                                      last_name="Alphakid"), registration)
    session.add(PaymentFlag(tenant_id=alpha.id, payment_link_id=zulu_link.id, checkout_session_id="cs_alpha_1",
                            kind=FlagKind.AMOUNT_MISMATCH, detail="Alpha family paid $1.00 for $150.00"))
    session.add(PaymentFlag(tenant_id=alpha.id, payment_link_id=zulu_link.id, checkout_session_id="cs_alpha_2",
                            kind=FlagKind.DISPUTE, detail="Alpha family disputed $150.00"))
    record_action(session, ActingUser("tom@alpha.example", Role.TREASURER, alpha.id), "export", "Alpha export")
    # The zulu family paid part of its registration in cash (the own family still owes all of its).
    record_payment(session, ActingUser("tom@alpha.example", Role.TREASURER, alpha.id), parent_id=zulu_parent.id,
                   amount_cents=5000, method=PaymentMethod.CASH)

    beta = make_tenant(session, "beta", name="Beta League")
    beta_team = make_team(session, beta, "Beta Team")
    beta_product = make_product(session, beta, "Beta Registration")
    beta_parent = make_parent(session, beta, "Beta Parent", email="parent@beta.example")
    beta_link = make_link(session, beta, make_player(session, beta, beta_parent, beta_team), beta_product)
    session.add(PaymentFlag(tenant_id=beta.id, payment_link_id=beta_link.id, checkout_session_id="cs_beta_1",
                            kind=FlagKind.DUPLICATE_PAYMENT, detail="Beta family paid twice"))
    record_action(session, ActingUser("bea@beta.example", Role.ADMIN, beta.id), "export", "Beta export")
    bring_up_to_date(session)  # the stored positions, as the world's commit would leave them

    return World(
        tenant=alpha,
        own_team_id=own_team.id,
        other_team_id=zulu_team.id,
        parent_ids=frozenset({own_parent.id, zulu_parent.id}),
        product_ids=frozenset({registration.id}),
        other_tenant_id=beta.id,
        callers={
            "coach": acting(alpha, Role.COACH, teams=(own_team,)),
            "treasurer": acting(alpha, Role.TREASURER),
            "admin": acting(alpha, Role.ADMIN),
            "nobody": None,
            "other league's admin": acting(beta, Role.ADMIN),
        },
    )


@pytest.mark.parametrize("call", CALLS, ids=lambda call: call.name)
def test_permission_matrix(session, subtests, call: Call):
    world = build_world(session)
    for caller in CALLERS:
        with subtests.test(caller=caller):
            savepoint = session.begin_nested()  # each caller starts from the same league
            try:
                check_call(session, call, caller, world)
            finally:
                savepoint.rollback()


def check_call(session: Session, call: Call, caller: str, world: World) -> None:
    user = world.callers[caller]
    before = {tenant_id: league_rows(session, tenant_id) for tenant_id in world.tenant_ids}
    if call.permission not in MAY[caller]:
        with pytest.raises(PermissionDenied) as refusal:
            call.run(session, user, world)
        expected = "Sign in" if user is None else f"A {user.role.value} may not"
        assert str(refusal.value).startswith(expected)
        after = {tenant_id: league_rows(session, tenant_id) for tenant_id in world.tenant_ids}
        assert after == before, "a refused call must change nothing"
        return
    seen = visible_text(call.run(session, user, world)).casefold()
    if caller == "other league's admin":
        assert LEAGUE_MARK not in seen, "another league's data leaked"
        assert league_rows(session, world.tenant.id) == before[world.tenant.id], "another league was changed"
        return
    if call.returns_league_data:
        assert LEAGUE_MARK in seen, "an allowed caller sees their league's data"
    if caller == "coach":
        assert OTHER_TEAM_MARK not in seen, "a coach saw another team"
        assert not any(email in seen for email in PARENT_EMAILS), "a coach saw a parent's email address"


def test_every_service_function_is_in_the_matrix():
    in_matrix = {_qualified(call.function) for call in CALLS}
    missing = [
        name for name, parameters in _public_core_functions()
        if "user" in parameters and name not in in_matrix and name not in NOT_SERVICE_FUNCTIONS
        and name not in COMMITTING_SERVICE_FUNCTIONS
    ]
    assert missing == [], "add a Call row for each of these to CALLS"


def test_every_function_that_reads_the_database_takes_the_acting_user():
    unchecked = [
        name for name, parameters in _public_core_functions()
        if "session" in parameters and "user" not in parameters and name not in BEFORE_ANYONE_ACTS
    ]
    assert unchecked == [], "service functions take the acting user right after the session"


def test_the_matrix_lists_no_function_that_no_longer_exists():
    public = {name for name, _ in _public_core_functions()}
    listed = ({_qualified(call.function) for call in CALLS} | set(NOT_SERVICE_FUNCTIONS) | set(BEFORE_ANYONE_ACTS)
              | set(COMMITTING_SERVICE_FUNCTIONS))
    assert sorted(listed - public) == []


def visible_text(value: Any) -> str:
    """Everything a caller could read in a result: text of rows, dataclasses, files and lists."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8-sig")
    if isinstance(value, str):
        return value
    if isinstance(value, Base):
        return " ".join(str(getattr(value, attr.key)) for attr in sa_inspect(value).mapper.column_attrs)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return " ".join(visible_text(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, Mapping):
        return " ".join(f"{visible_text(k)} {visible_text(v)}" for k, v in value.items())
    if isinstance(value, Iterable):
        return " ".join(visible_text(item) for item in value)
    return str(value)


def league_rows(session: Session, tenant_id: int) -> dict[str, list[Any]]:
    """Every row of every table that belongs to one league, to tell whether a call changed any."""
    rows: dict[str, list[Any]] = {}
    for table in Base.metadata.sorted_tables:
        if "tenant_id" in table.c:
            belongs = table.c.tenant_id == tenant_id
        elif table.name == "tenants":
            belongs = table.c.id == tenant_id
        elif "product_id" in table.c:
            belongs = table.c.product_id.in_(select(Product.id).where(Product.tenant_id == tenant_id))
        else:
            raise AssertionError(f"say how rows of table {table.name} belong to a league")
        rows[table.name] = list(session.execute(select(table).where(belongs).order_by(*table.primary_key)))
    return rows


def _qualified(function: Callable[..., Any]) -> str:
    return f"{function.__module__}.{function.__name__}"


def _public_core_functions() -> Iterable[tuple[str, Mapping[str, inspect.Parameter]]]:
    for info in pkgutil.walk_packages(core.__path__, "core."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isfunction(obj) and obj.__module__ == module.__name__ and not name.startswith("_"):
                yield f"{module.__name__}.{name}", inspect.signature(obj).parameters
