"""The League settings page: an admin renames the league; a bad colour is explained."""

from __future__ import annotations

from sqlalchemy import select

from core.models import Tenant


def test_an_admin_renames_the_league_from_the_page(demo_league, open_app, session):
    at = open_app("admin", page="league")
    assert not at.exception
    at.text_input(key="league_name").input("Eastside Ballers")
    at.button[0].click().run()
    assert not at.exception
    assert any("Saved" in s.value for s in at.success)
    session.expire_all()
    assert session.scalars(select(Tenant.name)).one() == "Eastside Ballers"
    assert at.selectbox(key="demo_league").format_func(at.selectbox(key="demo_league").value) == "Eastside Ballers"


def test_a_bad_reply_address_is_explained_and_nothing_changes(demo_league, open_app, session):
    at = open_app("admin", page="league")
    at.text_input(key="league_reply_to").input("nope")
    at.button[0].click().run()
    assert not at.exception
    assert at.error and "valid email" in at.error[0].value
    session.expire_all()
    assert session.scalars(select(Tenant.reply_to)).one() == "treasurer@westside-hoops.example"


def test_every_mistake_is_listed_in_one_save(demo_league, open_app, session):
    at = open_app("admin", page="league")
    at.text_input(key="league_reply_to").input("nope")
    at.text_input(key="league_logo").input("http://insecure.example/logo.png")
    at.text_input(key="league_name").input("   ")
    at.button[0].click().run()
    assert not at.exception
    [error] = at.error
    assert "valid email" in error.value and "https://" in error.value and "name cannot be empty" in error.value
    session.expire_all()
    assert session.scalars(select(Tenant.name)).one() != ""
