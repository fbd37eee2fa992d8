"""The league's brand: defined once, on the tenant row, and used by every email template."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.headerregistry import Address
from email.utils import parseaddr
from typing import Optional

from core.email.headers import header_text, require_header_address
from core.errors import InvalidInput
from core.models import Tenant

_COLOUR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


@dataclass(frozen=True)
class Brand:
    """Everything a template needs to look like the league's own email.

    Colours are checked to be plain hex colours, because they are written into CSS, where
    HTML escaping does not protect anything.
    """

    league_name: str
    primary_color: str
    accent_color: str
    logo_url: Optional[str]
    sender_name: str
    sender_address: str
    reply_to: Optional[str]
    footer_text: Optional[str]

    @property
    def sender(self) -> Address:
        return _address(self.sender_name, self.sender_address)

    @property
    def reply_to_address(self) -> Optional[Address]:
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
        if not _COLOUR.match(colour or ""):
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
    )


def _address(display_name: str, addr_spec: str) -> Address:
    return Address(display_name=header_text(display_name), addr_spec=require_header_address(addr_spec))
