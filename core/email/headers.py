"""Header values that can never carry a line break into a message's headers."""

from __future__ import annotations

import re
from email.header import Header
from typing import TYPE_CHECKING
from urllib.parse import quote

from core.errors import InvalidInput

if TYPE_CHECKING:
    from email_validator import ValidatedEmail

# Every character that could end a header line or hide in one: CR, LF, other C0/C1 controls,
# and the Unicode line and paragraph separators.
_BREAKS_AND_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u0085]+")
# The bidirectional embeddings, overrides (U+202A-U+202E) and isolates (U+2066-U+2069): they
# make a name show in another order than it is written ("Ana\u202egpj.exe" as "Anaexe.jpg").
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r"\s+")


def header_text(value: str | None, *, limit: int = 200) -> str:
    """Free text for a header or a name in an email (a subject, a display name, a player's name).

    Line breaks and controls become spaces; bidirectional overrides and isolates are removed.
    The templates show names through this too, so the HTML and text parts read as the headers do.
    """
    text = _BREAKS_AND_CONTROLS.sub(" ", _BIDI_CONTROLS.sub("", value or ""))
    return _SPACES.sub(" ", text).strip()[:limit]


def encoded_header(name: str, text: str) -> str:
    """``text`` as the value of header ``name``, already encoded and folded (RFC 2047), for
    ``Message.set_raw``: plain ASCII as it is, anything else as encoded words.

    The standard library's folding puts a space between two encoded words when it breaks a
    long header there, and readers drop whitespace between encoded words (RFC 2047, 6.2), so
    "Zoë Lefèvre" arrived as "ZoëLefèvre". Here each space stays inside an encoded word,
    and only the (ignored) folding between the words separates them.
    """
    value = header_text(text, limit=998)
    if value.isascii():
        return value
    return Header(value, "utf-8", header_name=name).encode(linesep="\r\n")


def mailto_url(address: str, *, subject: str) -> str:
    """A ``mailto:`` address with a subject, percent-encoded (RFC 6068): plain ASCII, no spaces."""
    return f"mailto:{quote(require_header_address(address), safe='@')}?subject={quote(header_text(subject), safe='')}"


def require_header_address(value: str | None) -> str:
    """An address for a header, unchanged; refuses anything holding a line break, a control
    character or a bidirectional override."""
    address = (value or "").strip()
    if not address or _BREAKS_AND_CONTROLS.search(address) or _BIDI_CONTROLS.search(address) or " " in address:
        raise InvalidInput(f"{value!r} is not a usable email address")
    return address


def validated_recipient(address: str) -> ValidatedEmail:
    """email-validator's verdict on ``address`` as a recipient: the one rule for an address,
    used by the roster import as by every send, so an address that imports can be sent to.

    Syntax only (no DNS lookup), and no SMTPUTF8: the part before the ``@`` must be ASCII
    (``josé@example.com`` is refused), because a mail server need not accept anything else.
    An international domain is fine: it is sent in its ASCII (IDNA) form. Raises
    ``EmailNotValidError`` with the reason.
    """
    # Imported when an address is checked, not with the models (which need this module's
    # names): a command that checks none starts without it.
    from email_validator import validate_email

    return validate_email(address, check_deliverability=False, allow_smtputf8=False)


def normalise_recipient(value: str | None) -> str:
    """A recipient address validated by ``validated_recipient``, in the ASCII form servers accept.

    Raises ``InvalidInput`` with the validator's reason when the address cannot be used.
    """
    from email_validator import EmailNotValidError

    if not value or not value.strip():
        raise InvalidInput("An email address is needed.")
    try:
        result = validated_recipient(value.strip())
    except EmailNotValidError as exc:
        raise InvalidInput(f"{value!r} is not a valid email address: {exc}") from None
    return require_header_address(result.ascii_email or result.normalized)
