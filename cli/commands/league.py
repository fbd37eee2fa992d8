"""``league``: show or change the league's name and brand (used by every email)."""

from __future__ import annotations

import argparse

from cli.context import add_tenant_option, league_command
from cli.output import shown
from core.access.league_settings import LeagueSettings, current_league_settings, update_league_settings

_OPTIONS = (
    ("--name", "name", "the league's name, as emails and pages show it"),
    ("--sender-name", "sender_name", "the name emails come from (the address is EMAIL_FROM)"),
    ("--reply-to", "reply_to", "where parents' replies go ('' to clear)"),
    ("--logo-url", "logo_url", "an https:// image shown at the top of emails ('' to clear)"),
    ("--primary-color", "primary_color", "brand colour of headers, e.g. #1D3557"),
    ("--accent-color", "accent_color", "colour of the Pay now buttons, e.g. #E63946"),
    ("--footer", "footer_text", "the footer line of every email ('' to clear)"),
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "league",
        help="show or change the league's name and brand",
        description="Without options, show the league's settings; with options, change them.",
    )
    add_tenant_option(parser)
    for flag, dest, text in _OPTIONS:
        parser.add_argument(flag, dest=dest, metavar="TEXT", help=text)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    changes = LeagueSettings(**{dest: getattr(args, dest) for _, dest, _ in _OPTIONS})
    with league_command(args) as ctx:
        if changes == LeagueSettings():
            settings = current_league_settings(ctx.session, ctx.user)
        else:
            settings = update_league_settings(ctx.session, ctx.user, changes)
            ctx.session.commit()
        slug = ctx.tenant.slug
    print(f"League '{shown(slug)}':")
    for flag, dest, _ in _OPTIONS:
        print(f"  {flag[2:]:<14} {shown(getattr(settings, dest) or '—')}")
    return 0
