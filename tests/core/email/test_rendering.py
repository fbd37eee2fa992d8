"""Rendering: escaping, header safety, the brand, both parts, and totals from the balances function."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC
from pathlib import Path

import pytest

from core.email.brand import Brand, brand_for_tenant
from core.email.campaigns import preview_email
from core.email.headers import require_header_address
from core.email.registry import OUTSTANDING_BALANCE, get_email_type
from core.email.rendering import compose_message, message_id_for, render_email
from core.errors import InvalidInput
from core.models import Tenant
from core.money import format_cents
from core.reporting.balances import LineItem, OutstandingBalance, outstanding_balances
from tests.core.email.conftest import EMAIL_FROM
from tests.factories import acting

BRAND = Brand(
    league_name="Westside <Hoops> & Co",
    primary_color="#123456",
    accent_color="#abcdef",
    logo_url="https://westside.example.org/logo.png",
    sender_name="Westside Treasurer",
    sender_address="treasurer@westside.example.org",
    reply_to="replies@westside.example.org",
    footer_text="1 Court Street & Gym",
)


def balance(parent_name: str = "Ana", *players: str, url: str = "https://buy.stripe.com/test_1?a=1&b=2") -> OutstandingBalance:
    items = tuple(
        LineItem(
            link_id=n, player_id=n, player_name=name, team_name="Red", product_id=1,
            product_name="Registration & fees", amount_cents=15000 + n, currency="usd", pay_url=url,
        )
        for n, name in enumerate(players or ("Amy",), start=1)
    )
    return OutstandingBalance(parent_id=7, parent_name=parent_name, parent_email="ana@example.org",
                              email_opt_out=False, items=items)


def parse(message) -> email.message.EmailMessage:  # type: ignore[no-untyped-def]
    return email.message_from_bytes(message.as_bytes(), policy=email.policy.default)  # type: ignore[return-value]


def send_bytes(rendered, name="Ana", address="ana@example.org"):  # type: ignore[no-untyped-def]
    return compose_message(rendered, brand=BRAND, to_name=name, to_address=address,
                           message_id=message_id_for(tenant_id=1, campaign_id=2, parent_id=7, domain="westside.example.org"))


def test_names_with_markup_ampersands_quotes_and_accents_are_escaped_in_html_and_exact_in_text():
    rendered = render_email(OUTSTANDING_BALANCE, balance("Zoë <script>alert(1)</script> & \"Co\"", "Amy <b>O'Neil</b>"), BRAND)
    assert "<script>" not in rendered.html and "<b>O'Neil" not in rendered.html
    assert "Zoë &lt;script&gt;alert(1)&lt;/script&gt; &amp;" in rendered.html
    assert "Amy &lt;b&gt;O" in rendered.html
    assert 'href="https://buy.stripe.com/test_1?a=1&amp;b=2"' in rendered.html
    assert "Hi Zoë <script>alert(1)</script> & \"Co\"," in rendered.text
    assert "Amy <b>O'Neil</b> | Registration & fees | $150.01" in rendered.text
    text_part = parse(send_bytes(rendered)).get_body(("plain",)).get_content()
    assert "Zoë" in text_part and "Amy <b>O'Neil</b>" in text_part


def test_a_line_break_in_a_name_cannot_add_a_header():
    evil = "Ana\r\nBcc: everyone@example.org\r\nX-Injected: yes"
    rendered = render_email(OUTSTANDING_BALANCE, balance(evil, "Amy\nSubject: gotcha"), BRAND)
    assert "\n" not in rendered.subject and "\r" not in rendered.subject
    message = parse(send_bytes(rendered, name=evil))
    assert message["Bcc"] is None and message["X-Injected"] is None
    assert message["To"].addresses[0].addr_spec == "ana@example.org"
    assert len(message.get_all("Subject")) == 1


BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def test_bidirectional_overrides_are_removed_from_names_in_headers_html_and_text():
    # "Ana\u202egpj.exe" would show as "Anaexe.jpg"; an isolate can hide text the same way.
    evil = "Ana \u202eLeahcim\u202c \u2066Smith\u2069"
    players = ("Amy\u202d Lee\u202a", "Bo\u2067\u2068 Zed\u202b")
    league = Tenant(slug="westside", name="West\u202eside", sender_name="Treasurer\u2066 X\u2069",
                    brand_primary_color="#123456", brand_accent_color="#abcdef")
    brand = brand_for_tenant(league, email_from=EMAIL_FROM)
    rendered = render_email(OUTSTANDING_BALANCE, balance(evil, *players), brand)
    message = compose_message(
        rendered, brand=brand, to_name=evil, to_address="ana@example.org",
        message_id=message_id_for(tenant_id=1, campaign_id=2, parent_id=7, domain="westside.example.org"),
    )
    headers = parse(message)
    shown = [rendered.subject, rendered.html, rendered.text, str(headers["To"]), str(headers["From"]),
             str(headers["Subject"])]
    for text in shown:
        assert not any(control in text for control in BIDI_CONTROLS), repr(text)
    assert "Hi Ana Leahcim Smith," in rendered.text and "Amy Lee | Registration" in rendered.text
    assert "Bo Zed" in rendered.html and "Westside" in rendered.html
    assert headers["To"].addresses[0].display_name == "Ana Leahcim Smith"
    assert headers["From"].addresses[0].display_name == "Treasurer X"


@pytest.mark.parametrize("address", ["ana@example.org\u202e", "\u2066ana@example.org"])
def test_a_header_address_with_a_bidirectional_control_is_refused(address):
    with pytest.raises(InvalidInput, match="not a usable email address"):
        require_header_address(address)


@pytest.mark.parametrize("address", ["ana@example.org\r\nBcc: x@example.org", "ana@example.org\nx", "a b@example.org"])
def test_a_recipient_address_with_a_line_break_is_refused(address):
    rendered = render_email(OUTSTANDING_BALANCE, balance(), BRAND)
    with pytest.raises(InvalidInput):
        send_bytes(rendered, address=address)


def test_the_message_has_a_plain_text_part_and_an_html_alternative():
    message = parse(send_bytes(render_email(OUTSTANDING_BALANCE, balance("Ana", "Amy", "Al"), BRAND)))
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    html = message.get_body(("html",)).get_content()
    assert "<th" in html and ">Player</th>" in html and ">Pay Now</th>" in html
    assert html.count(">Pay now</a>") == 2


def test_css_is_inlined_for_mail_clients():
    html = render_email(OUTSTANDING_BALANCE, balance(), BRAND).html
    assert "<style" not in html
    assert re.search(r'<a class="button" href="[^"]+" style="[^"]*background-color: #abcdef', html)


def test_the_leagues_brand_appears_in_html_text_and_headers():
    rendered = render_email(OUTSTANDING_BALANCE, balance(), BRAND)
    for value in ("#123456", "#abcdef", "https://westside.example.org/logo.png", "Westside &lt;Hoops&gt; &amp; Co",
                  "1 Court Street &amp; Gym", "replies@westside.example.org"):
        assert value in rendered.html
    assert "Westside <Hoops> & Co" in rendered.text and "1 Court Street & Gym" in rendered.text
    assert rendered.subject.startswith("Westside <Hoops> & Co: $150.01 outstanding for Amy")
    message = parse(send_bytes(rendered))
    assert message["From"].addresses[0].display_name == "Westside Treasurer"
    assert message["From"].addresses[0].addr_spec == "treasurer@westside.example.org"
    assert message["Reply-To"].addresses[0].addr_spec == "replies@westside.example.org"


def test_the_brand_comes_from_the_league_row(session, league):
    brand = brand_for_tenant(league["tenant"], email_from=EMAIL_FROM)
    assert (brand.league_name, brand.primary_color, brand.accent_color) == ("Westside Hoops", "#123456", "#abcdef")
    assert brand.sender_name == "Westside Treasurer" and brand.sender_address == "treasurer@westside.example.org"
    assert brand.reply_to == "treasurer-replies@westside.example.org"
    assert brand.footer_text == "Westside Hoops · 1 Court Street"


@pytest.mark.parametrize("colour", ["red; background: url(https://evil.example)", "#12345g", ""])
def test_a_brand_colour_that_is_not_a_hex_colour_is_refused(session, league, colour):
    league["tenant"].brand_accent_color = colour
    with pytest.raises(InvalidInput, match="accent brand colour"):
        brand_for_tenant(league["tenant"], email_from=EMAIL_FROM)


PACKAGE = Path(__file__).resolve().parents[3] / "core" / "email"
# A colour written out: #rgb, #rrggbb (with or without alpha), or a CSS colour function.
COLOUR_LITERAL = re.compile(r"#(?:[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})\b|\b(?:rgba?|hsla?)\(", re.IGNORECASE)


def test_no_colour_is_written_in_python_code_outside_the_brand():
    offenders = [path.name for path in PACKAGE.glob("*.py") if COLOUR_LITERAL.search(path.read_text())]
    assert offenders == ["brand.py"]


def test_templates_contain_no_colour_of_their_own():
    templates = sorted((PACKAGE / "templates").iterdir())
    assert templates, "no templates found"
    offenders = {path.name: COLOUR_LITERAL.findall(path.read_text()) for path in templates}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_neutral_colours_come_from_the_brand():
    plain = render_email(OUTSTANDING_BALANCE, balance(), BRAND).html
    assert "#f4f5f7" in plain and "#6a737d" in plain  # the defaults
    dark = Brand(**{**vars(BRAND), "page_background_color": "#000000", "text_color": "#eeeeee",
                    "border_color": "#333333", "muted_text_color": "#999999", "card_background_color": "#111111",
                    "text_on_brand_color": "#fefefe"})
    html = render_email(OUTSTANDING_BALANCE, balance(), dark).html
    for colour in ("#000000", "#eeeeee", "#333333", "#999999", "#111111", "#fefefe"):
        assert colour in html
    assert "#f4f5f7" not in html and "#6a737d" not in html and "#ffffff" not in html


def test_a_neutral_colour_that_is_not_a_hex_colour_is_refused():
    with pytest.raises(InvalidInput, match="border color must be a hex colour"):
        Brand(**{**vars(BRAND), "border_color": "red; background: url(https://evil.example)"})


def test_only_web_links_become_pay_now_buttons():
    rendered = render_email(OUTSTANDING_BALANCE, balance(url="javascript:alert(1)"), BRAND)
    assert "javascript:" not in rendered.html and "Pay now" not in rendered.text


def test_a_payment_still_processing_shows_instead_of_a_button():
    processing = OutstandingBalance(7, "Ana", "ana@example.org", False, (
        LineItem(1, 1, "Amy", None, 1, "Dues", 6000, "usd", "https://buy.stripe.com/x", processing=True),))
    rendered = render_email(OUTSTANDING_BALANCE, processing, BRAND)
    assert "Payment processing" in rendered.html and "Pay now" not in rendered.html


def test_message_id_is_the_same_for_one_campaign_and_parent_and_differs_otherwise():
    first = message_id_for(tenant_id=1, campaign_id=5, parent_id=9, domain="westside.example.org")
    assert first == message_id_for(tenant_id=1, campaign_id=5, parent_id=9, domain="westside.example.org")
    assert first != message_id_for(tenant_id=1, campaign_id=6, parent_id=9, domain="westside.example.org")
    assert first != message_id_for(tenant_id=1, campaign_id=5, parent_id=10, domain="westside.example.org")
    assert first.startswith("<") and first.endswith("@westside.example.org>")


def test_the_same_message_composed_twice_is_the_same_bytes():
    from datetime import datetime
    rendered = render_email(OUTSTANDING_BALANCE, balance(), BRAND)
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    one = compose_message(rendered, brand=BRAND, to_name="Ana", to_address="ana@example.org", message_id="<a@b.org>", date=when)
    two = compose_message(rendered, brand=BRAND, to_name="Ana", to_address="ana@example.org", message_id="<a@b.org>", date=when)
    assert one.as_bytes() == two.as_bytes()


def test_every_email_total_equals_the_balances_function(session, league):
    admin = acting(league["tenant"])
    balances = outstanding_balances(session, admin)
    assert balances
    brand = brand_for_tenant(league["tenant"], email_from=EMAIL_FROM)
    for owed in balances:
        rendered = render_email(OUTSTANDING_BALANCE, owed, brand)
        total = format_cents(owed.total_cents, owed.currency)
        assert f"Total: {total}" in rendered.text
        assert total in rendered.subject
        assert rendered.text.count(" | ") == 2 * len(owed.items)


def test_siblings_are_in_one_email_to_their_parent(session, league):
    preview = preview_email(session, acting(league["tenant"]), parent_id=league["ana"].id,
                            email_type=OUTSTANDING_BALANCE, email_from=EMAIL_FROM)
    assert preview.rendered.text.count("Amy O'Neil |") == 2 and preview.rendered.text.count("Al O'Neil |") == 1
    assert "Total: $360.00" in preview.rendered.text
    assert "Al O'Neil and Amy O'Neil" in preview.rendered.subject
    assert dict(preview.headers)["To"] == '"Ana O\'Neil <& Co>" <ana@example.org>'
    assert preview.raw == preview.message.as_bytes()


def test_an_unknown_email_type_is_refused_by_name():
    assert get_email_type("outstanding_balance") is OUTSTANDING_BALANCE
    with pytest.raises(InvalidInput, match="outstanding_balance"):
        get_email_type("birthday")
