"""A small league with open charges: the Okafors (two players) and the Zeds (one)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pytest
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Role
from core.models import Charge, Parent, Player, ProductKind, Tenant
from tests.factories import acting, make_charge, make_parent, make_player, make_product, make_team, make_tenant


@dataclass
class Books:
    tenant: Tenant
    treasurer: ActingUser
    okafor: Parent
    zed: Parent
    amy: Player
    al: Player
    bo: Player
    registration_amy: Charge  # $150, due Sept 1
    registration_al: Charge  # $150, due Sept 1
    dues_amy: Charge  # $60, due Oct 1
    registration_bo: Charge  # $150, due Sept 1


@pytest.fixture
def books(session: Session) -> Books:
    tenant = make_tenant(session, name="Alpha League")
    team = make_team(session, tenant, "Red")
    registration = make_product(session, tenant, "Registration", amount_cents=15000)
    dues = make_product(session, tenant, "Monthly dues", kind=ProductKind.MONTHLY, amount_cents=6000)
    okafor = make_parent(session, tenant, "Ngozi Okafor", "ngozi@example.org")
    zed = make_parent(session, tenant, "Ben Zed", "ben@example.org")
    amy = make_player(session, tenant, okafor, team, first_name="Amy", last_name="Okafor")
    al = make_player(session, tenant, okafor, team, first_name="Al", last_name="Okafor")
    bo = make_player(session, tenant, zed, team, first_name="Bo", last_name="Zed")
    sept, octo = date(2026, 9, 1), date(2026, 10, 1)
    books = Books(
        tenant=tenant, treasurer=acting(tenant, Role.TREASURER), okafor=okafor, zed=zed, amy=amy, al=al, bo=bo,
        registration_amy=make_charge(session, tenant, okafor, amount_cents=15000, player=amy, product=registration,
                                     due_on=sept),
        registration_al=make_charge(session, tenant, okafor, amount_cents=15000, player=al, product=registration,
                                    due_on=sept),
        dues_amy=make_charge(session, tenant, okafor, amount_cents=6000, player=amy, product=dues, due_on=octo),
        registration_bo=make_charge(session, tenant, zed, amount_cents=15000, player=bo, product=registration,
                                    due_on=sept),
    )
    session.commit()
    return books
