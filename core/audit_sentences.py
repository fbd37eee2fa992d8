"""What each audit entry says happened, as a sentence: "Sent 23 reminder emails".

An entry keeps its action code (``email.campaign_run``: what the filter and the CSV's
``action`` column hold) and the summary written when it happened. ``describe_action`` turns
the code and the entry's details into the sentence the Audit log page and the audit CSV
show; an action without a sentence of its own shows its summary. Nothing decides anything
on these words.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from core.ledger.words import ADJUSTMENT, METHOD
from core.models import AdjustmentKind, PaymentMethod
from core.money import format_cents
from core.words import plural

Details = Mapping[str, Any]

# The action codes in words, for the Audit log's filter.
ACTION_NAMES = {
    "export": "CSV downloads",
    "roster_import": "Roster imports",
    "league_created": "League created",
    "league_settings": "League settings changed",
    "backfill.commit": "Payment links created",
    "ledger.billing": "Charges billed",
    "ledger.charge": "Charges",
    "ledger.payment": "Payments recorded",
    "ledger.payment_state": "Payments settled or failed",
    "ledger.adjustment": "Discounts, waivers and write-offs",
    "ledger.reversal": "Corrections (reversals)",
    "ledger.refund": "Refunds",
    "sync": "Payment checks with Stripe",
    "email.test_send": "Test emails",
    "email.send_to_everyone": "Reminder emails queued",
    "email.campaign_run": "Reminder emails sent",
    "email.interrupted_decided": "Interrupted emails decided",
    "email_opt_out": "Families opted out",
    "email_opt_in": "Families opted back in",
}


def action_name(action: str) -> str:
    """The name of an action code for people (the code itself when it has none)."""
    return ACTION_NAMES.get(action, action)


def family_words(name: str) -> str:
    """"the García family" for a roster name written "García, Maria"; the name itself otherwise."""
    last, comma, _ = name.partition(",")
    return f"the {last.strip()} family" if comma and last.strip() else name


def describe_action(action: str, details: Details | None, summary: str) -> str:
    """The sentence for one audit entry: from its action code and details, else its summary."""
    describe = _SENTENCES.get(action)
    if describe is not None:
        try:
            sentence = describe(details or {})
        except (KeyError, TypeError, ValueError):
            sentence = None  # an older entry without the details this sentence needs
        if sentence:
            return sentence
    return summary


def _money(details: Details, key: str = "amount_cents") -> str:
    return format_cents(int(details[key]), str(details["currency"]))


def _export(details: Details) -> str:
    if details["kind"] == "audit_log":
        return f"Downloaded the audit log ({plural(int(details['entries']), 'entry', 'entries')})"
    families = plural(int(details["families"]), "family", "families")
    return f"Downloaded the balances of {families} as a spreadsheet"


def _roster_import(details: Details) -> str:
    kind = details["kind"]
    return f"Imported the {kind} file {details['file']} ({plural(int(details['rows']), 'row')})"


def _backfill(details: Details) -> str:
    made = int(details["minted"]) + int(details["replaced"])
    sentence = f"Created {plural(made, 'payment link')}"
    if details["replaced"]:
        sentence += f" ({int(details['replaced']):,} at a new price)"
    failed = details.get("failed") or []
    if failed:
        sentence += f"; {plural(len(failed), 'link')} could not be created"
    if details.get("interrupted"):
        sentence += "; the run stopped part-way (running it again finishes it)"
    return sentence


def _payment(details: Details) -> str:
    method = PaymentMethod(details["method"])
    family = family_words(str(details["family"]))
    if method is PaymentMethod.STRIPE:
        return f"Recorded a {_money(details)} payment through Stripe from {family}"
    return f"Recorded a {_money(details)} {METHOD[method]} payment from {family}"


def _adjustment(details: Details) -> str:
    kind = ADJUSTMENT[AdjustmentKind(details["kind"])]
    return f"Took a {_money(details)} {kind} off what {family_words(str(details['family']))} owes"


def _refund(details: Details) -> str:
    return f"Refunded {_money(details)} to {family_words(str(details['family']))}"


def _reversal(details: Details) -> str:
    family = family_words(str(details["family"]))
    return f"Reversed entry {int(details['reversed_entry_id'])} ({details['reversed_kind']}) of {family}"


def _billing(details: Details) -> str:
    return f"Billed {plural(int(details['charges']), 'charge')} for what signed players owe"


def _sync(details: Details) -> str:
    what = "every payment link" if details["full"] else "new payments since the last check"
    sentence = f"Checked Stripe for {what}: {plural(int(details['paid']), 'payment')} found"
    if not details.get("complete", True):
        sentence += " (the check did not finish)"
    return sentence


def _queued(details: Details) -> str:
    skipped = sum(int(n) for n in (details.get("skipped") or {}).values())
    return (f"Queued {plural(int(details['emails']), 'reminder email')} (campaign #{int(details['campaign_id'])}), "
            f"{plural(skipped, 'family', 'families')} skipped")


def _campaign_run(details: Details) -> str:
    sentence = f"Sent {plural(int(details['sent']), 'reminder email')}"
    if details.get("failed"):
        sentence += f", {int(details['failed']):,} could not be sent"
    return sentence + f" (campaign #{int(details['campaign_id'])})"


def _test_send(details: Details) -> str:
    return f"Sent a test email to {details['to']}"


_SENTENCES: dict[str, Callable[[Details], str | None]] = {
    "export": _export,
    "roster_import": _roster_import,
    "backfill.commit": _backfill,
    "ledger.payment": _payment,
    "ledger.adjustment": _adjustment,
    "ledger.refund": _refund,
    "ledger.reversal": _reversal,
    "ledger.billing": _billing,
    "sync": _sync,
    "email.send_to_everyone": _queued,
    "email.campaign_run": _campaign_run,
    "email.test_send": _test_send,
}
