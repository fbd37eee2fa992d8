"""Before a backfill commit: what would stop it, and what to warn about (``backfill_preflight``).

The one place these rules live; the command line and the page only show the result, in the
dry run (what ``--commit`` would refuse) and before minting:

* minting needs a Stripe key (the dry run works without one);
* a link sends the family to the league's thank-you page (else ``PAYMENT_SUCCESS_URL``) after paying: the placeholder stops
  live links (``core.settings.success_url_problem``, which ``commit_backfill`` enforces too)
  and is a warning for test links. Only minting needs it: a plan that only switches old
  links off is not held up by it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from core.access.league_settings import EffectiveSettings, effective_settings
from core.backfill.plan import BackfillPlan
from core.errors import BillingError
from core.payments.gateway import StripeNotConfigured
from core.settings import ConfigurationError, Settings


class PreflightKind(str, enum.Enum):
    STRIPE_NOT_CONFIGURED = "stripe_not_configured"
    PLACEHOLDER_THANK_YOU_PAGE = "placeholder_thank_you_page"


@dataclass(frozen=True)
class PreflightNote:
    kind: PreflightKind
    message: str
    stops_commit: bool


class BackfillNotReady(BillingError):
    """A commit was asked for, but the preflight found what stops it."""


@dataclass(frozen=True)
class BackfillPreflight:
    notes: tuple[PreflightNote, ...] = ()

    @property
    def problems(self) -> tuple[PreflightNote, ...]:
        """What stops a commit (in a dry run: what ``--commit`` would refuse)."""
        return tuple(note for note in self.notes if note.stops_commit)

    @property
    def warnings(self) -> tuple[PreflightNote, ...]:
        return tuple(note for note in self.notes if not note.stops_commit)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        """``BackfillNotReady`` with the first problem's message, unless there is none."""
        if self.problems:
            raise BackfillNotReady(self.problems[0].message)


def backfill_preflight(
    settings: Settings, plan: BackfillPlan, *, commit: bool, in_force: EffectiveSettings | None = None
) -> BackfillPreflight:
    """What stops (or should be said before) committing ``plan`` with ``settings``, for the
    league whose settings in force (``core.access.league_settings.effective_settings``) are
    ``in_force``: its own thank-you page, else the configured one (``None``: a league that
    sets none of its own).

    ``commit=False`` is the dry run: a missing Stripe key is no problem there, and the
    thank-you page is checked as the commit would check it, so the dry run can say it first.
    """
    in_force = in_force or effective_settings(None, settings)
    notes: list[PreflightNote] = []
    if not settings.stripe_configured:
        if commit:
            message = str(StripeNotConfigured("create payment links (the dry run works without it)"))
            notes.append(PreflightNote(PreflightKind.STRIPE_NOT_CONFIGURED, message, stops_commit=True))
        return BackfillPreflight(tuple(notes))
    if plan.to_change:
        try:
            warning = in_force.success_url_problem()
        except ConfigurationError as refusal:
            notes.append(PreflightNote(PreflightKind.PLACEHOLDER_THANK_YOU_PAGE, str(refusal), stops_commit=True))
        else:
            if warning:
                notes.append(PreflightNote(PreflightKind.PLACEHOLDER_THANK_YOU_PAGE, warning, stops_commit=False))
    return BackfillPreflight(tuple(notes))
