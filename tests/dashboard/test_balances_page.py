"""The Balances page as each role sees it."""

from __future__ import annotations

from core.access.leagues import find_tenant
from core.access.permissions import Role
from core.money import format_cents
from core.reporting.balances import FamilyOrder, outstanding_balances, summarise
from core.reporting.directory import league_teams
from core.reporting.name_search import fold
from tests.factories import acting


def _expected_total(session, role=Role.ADMIN, teams=()):  # type: ignore[no-untyped-def]
    tenant = find_tenant(session, "demo")
    user = acting(tenant, role)
    if teams:
        from core.access.permissions import ActingUser

        user = ActingUser("coach", Role.COACH, tenant.id, frozenset(teams))
    return summarise(outstanding_balances(session, user))


def test_admin_sees_the_league_total_and_families(demo_league, open_app, session):
    at = open_app("admin")
    assert not at.exception
    expected = _expected_total(session)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Total outstanding"] == format_cents(expected.total_cents)
    assert metrics["Families owing"] == f"{expected.families:,}"
    assert len(at.expander) == 25  # first page of families
    assert any(b.label.startswith("Download line items") for b in at.get("download_button"))


def test_coach_sees_only_their_team_without_contact_details_or_export(demo_league, open_app, session):
    tenant = find_tenant(session, "demo")
    team = league_teams(session, tenant.id)[0]
    at = open_app("coach", coach_teams=[team.id])
    assert not at.exception
    expected = _expected_total(session, Role.COACH, teams=(team.id,))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Total outstanding"] == format_cents(expected.total_cents)
    assert "@" not in " ".join(e.label for e in at.expander)
    assert not at.get("download_button")
    assert [t.label for t in at.text_input] == ["Family or player name"]


def test_a_coach_of_no_team_is_told_so_not_sent_to_the_backfill(demo_league, open_app):
    at = open_app("coach", coach_teams=[])
    assert not at.exception
    assert any("not the coach of any team yet" in w.value for w in at.warning)
    assert not any("backfill" in s.value for s in at.success)


def test_search_ignores_accents(demo_league, open_app, session):
    accented = next(b.parent_name for b in outstanding_balances(session, acting(find_tenant(session, "demo")))
                    if not b.parent_name.isascii())
    at = open_app("treasurer")
    at.text_input(key="filter_search").input(fold(accented)).run()  # typed without the accents
    assert not at.exception
    assert at.expander and any(accented in e.label for e in at.expander)


def test_search_narrows_to_matching_families(demo_league, open_app):
    at = open_app("treasurer")
    at.text_input(key="filter_search").input("O'Brien").run()
    assert not at.exception
    assert at.expander and all("O'Brien" in e.label for e in at.expander)


def test_a_search_that_matches_nobody_says_so(demo_league, open_app):
    at = open_app("treasurer")
    at.text_input(key="filter_search").input("zzzz-nobody").run()
    assert not at.exception
    assert any("No family owes anything that matches" in i.value for i in at.info)


def test_names_from_the_roster_are_shown_as_typed_not_as_markdown(demo_league, open_app, session):
    from core.models import Parent

    tenant = find_tenant(session, "demo")
    owing = outstanding_balances(session, acting(tenant))[0]
    parent = session.get(Parent, owing.parent_id)
    parent.name = "[Pay here](https://evil.example) __Bold__"
    session.commit()
    at = open_app("treasurer")
    at.text_input(key="filter_search").input("pay here").run()
    assert not at.exception
    label = next(e.label for e in at.expander if "Pay here" in e.label)
    assert "\\[Pay here\\]" in label and "\\_\\_Bold\\_\\_" in label


def test_a_search_typed_as_one_role_is_not_carried_into_another_roles_view(demo_league, open_app):
    at = open_app("treasurer")
    at.text_input(key="filter_search").input("O'Brien").run()
    assert all("O'Brien" in e.label for e in at.expander)
    at.session_state["demo_role"] = _role_of("admin")
    at.run()
    assert not at.exception
    assert at.text_input(key="filter_search").value == ""
    assert len(at.expander) == 25  # the whole league again, first page


def test_the_family_list_pages_with_buttons_and_sorts_by_amount(demo_league, open_app, session):
    at = open_app("treasurer")
    assert not at.number_input  # no page number to type
    first = [e.label for e in at.expander]
    at.button(key="families_next").click().run()
    assert not at.exception
    second = [e.label for e in at.expander]
    assert second and not set(first) & set(second)
    at.selectbox(key="families_order").set_value(FamilyOrder.AMOUNT).run()
    assert not at.exception
    expected = outstanding_balances(session, acting(find_tenant(session, "demo"), Role.TREASURER),
                                    order=FamilyOrder.AMOUNT)[:25]
    assert [e.label.split("** — ")[1].split(" (")[0] for e in at.expander] == [
        format_cents(b.total_cents) for b in expected]  # back on page 1, most owed first


def _role_of(name: str):  # type: ignore[no-untyped-def]
    return {"admin": Role.ADMIN, "treasurer": Role.TREASURER, "coach": Role.COACH}[name]
