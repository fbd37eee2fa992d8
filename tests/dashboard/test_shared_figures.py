"""The balances the dashboard keeps once per server are forgotten by a write that changes them,
and kept through one that only adds to the audit log (a CSV exported)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.access.permissions import Role
from core.audit import record_action
from core.db import make_engine
from core.models import Tenant
from dashboard import state
from tests.factories import acting, make_parent, make_tenant


def test_an_audit_entry_keeps_the_shared_figures_and_any_other_write_forgets_them(database_url):
    engine = make_engine(database_url)
    state._note_writes(engine)
    computed: list[int] = []

    @state.shared_figures
    def figures(key: str) -> int:
        computed.append(1)
        return len(computed)

    try:
        with Session(engine) as session:
            tenant_id = make_tenant(session).id
            session.commit()
        assert figures("league") == figures("league") == 1  # the second is kept
        with Session(engine) as session:
            record_action(session, acting(session.get(Tenant, tenant_id), Role.TREASURER), "export",
                          "Exported 3 line items")
            session.commit()
        assert figures("league") == 1, "exporting changes no balance"
        with Session(engine) as session:
            make_parent(session, session.get(Tenant, tenant_id), "Ana Lima", "ana@example.org")
            session.commit()
        assert figures("league") == 2, "a new family is a change the figures must show"
    finally:
        state.forget_shared_figures()
        engine.dispose()
