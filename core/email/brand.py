"""The league's brand: defined once, and used by every email template.

The league's own colours, logo, names and footer come from the tenant row; the neutral
colours around them (page, card, text, borders, muted text) are named here, once, with their
defaults. Templates take every colour from ``brand`` and contain no colour of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.headerregistry import Address
from email.utils import parseaddr

from core.email.headers import header_text, require_header_address
from core.errors import InvalidInput
from core.models import Tenant
from core.timezones import DEFAULT_TIME_ZONE, league_zone

HEX_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")


def is_hex_colour(value: str | None) -> bool:
    """True for a plain CSS hex colour (#RGB or #RRGGBB), the only kind written into CSS."""
    return bool(value) and HEX_COLOUR.fullmatch(value or "") is not None

# The neutral palette every league's email shares (the league's own colours are on its row).
PAGE_BACKGROUND_COLOR = "#f4f5f7"
CARD_BACKGROUND_COLOR = "#ffffff"
TEXT_COLOR = "#222222"
TEXT_ON_BRAND_COLOR = "#ffffff"  # text on the league's primary and accent colours
BORDER_COLOR = "#e1e4e8"
MUTED_TEXT_COLOR = "#6a737d"


@dataclass(frozen=True)
class Brand:
    """Everything a template needs to look like the league's own email.

    Colours are checked to be plain hex colours, because they are written into CSS, where
    HTML escaping does not protect anything.
    """

    league_name: str
    primary_color: str
    accent_color: str
    logo_url: str | None
    sender_name: str
    sender_address: str
    reply_to: str | None
    footer_text: str | None
    time_zone: str = DEFAULT_TIME_ZONE  # the league's: the "as of" time and the Date header are on its clock
    page_background_color: str = PAGE_BACKGROUND_COLOR
    card_background_color: str = CARD_BACKGROUND_COLOR
    text_color: str = TEXT_COLOR
    text_on_brand_color: str = TEXT_ON_BRAND_COLOR
    border_color: str = BORDER_COLOR
    muted_text_color: str = MUTED_TEXT_COLOR

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if name.endswith("_color") and not is_hex_colour(value):
                raise InvalidInput(f"The email's {name.replace('_', ' ')} must be a hex colour like #RRGGBB, not {value!r}")

    @property
    def sender(self) -> Address:
        return _address(self.sender_name, self.sender_address)

    @property
    def reply_to_address(self) -> Address | None:
        return _address("", self.reply_to) if self.reply_to else None

    @property
    def sender_domain(self) -> str:
        return self.sender_address.rpartition("@")[2] or "localhost"


def brand_for_tenant(tenant: Tenant, *, email_from: str) -> Brand:
    """The brand of ``tenant``; ``email_from`` (the ``EMAIL_FROM`` setting) gives the sending address.

    The tenant's ``sender_name`` replaces the display name of ``EMAIL_FROM`` when set.
    """
    default_name, address = parseaddr(email_from)
    if not address or "@" not in address:
        raise InvalidInput(f"EMAIL_FROM must be an email address, not {email_from!r}")
    for label, colour in (("primary", tenant.brand_primary_color), ("accent", tenant.brand_accent_color)):
        if not is_hex_colour(colour):
            raise InvalidInput(
                f"The league's {label} brand colour must be a hex colour like #RRGGBB, not {colour!r}"
            )
    logo = (tenant.logo_url or "").strip()
    return Brand(
        league_name=header_text(tenant.name),
        primary_color=tenant.brand_primary_color,
        accent_color=tenant.brand_accent_color,
        logo_url=logo if logo.startswith("https://") else None,
        sender_name=header_text(tenant.sender_name or default_name or tenant.name),
        sender_address=require_header_address(address),
        reply_to=require_header_address(tenant.reply_to) if tenant.reply_to else None,
        footer_text=tenant.footer_text or None,
        time_zone=league_zone(tenant),
    )


def _address(display_name: str, addr_spec: str) -> Address:
    return Address(display_name=header_text(display_name), addr_spec=require_header_address(addr_spec))
