"""A DATABASE_URL is never shown with its password, and one that cannot be read is one clear refusal."""

from __future__ import annotations

import pytest

from core.db import make_engine, normalise_url
from core.settings import ConfigurationError, Settings, without_database_secrets

UNENCODED_AT = "postgresql://postgres:DBSEC@RETPW@127.0.0.1/league"


@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql://billing:s3cret@db.internal:5432/league", "postgresql://***@db.internal:5432/league"),
        (UNENCODED_AT, "postgresql://***@127.0.0.1/league"),
        ("postgresql://postgres:a@b:c@d@db/x", "postgresql://***@db/x"),
        ("postgresql://billing:p%40ss@db/x", "postgresql://***@db/x"),
        ("postgresql://billing@db/x", "postgresql://***@db/x"),
        ("postgresql://db.internal/league", "postgresql://db.internal/league"),
        ("postgresql://billing:s3cret@db:port/x", "postgresql://***@db:port/x"),
        ("sqlite:////srv/data/league.db", "sqlite:////srv/data/league.db"),
        ("sqlite:///data/league@2024.db", "sqlite:///data/league@2024.db"),
    ],
)
def test_everything_between_the_scheme_and_the_last_at_sign_is_masked(url, shown):
    assert Settings(database_url=url).database_url_for_display() == shown


@pytest.mark.parametrize("make", [make_engine, normalise_url])
def test_a_password_with_an_unencoded_at_sign_is_refused_without_showing_any_of_it(make):
    with pytest.raises(ConfigurationError) as refusal:
        make(UNENCODED_AT)
    message = str(refusal.value)
    assert "must be URL-encoded" in message and "%40" in message
    assert "DBSEC" not in message and "RETPW" not in message


@pytest.mark.parametrize("make", [make_engine, normalise_url])
def test_a_port_that_is_not_a_number_is_one_clear_refusal(make):
    with pytest.raises(ConfigurationError) as refusal:
        make("postgresql://billing:s3cret@db.internal:54x2/league")
    message = str(refusal.value)
    assert "port" in message and "'54x2' is not a number" in message
    assert "s3cret" not in message


def test_a_url_that_is_not_a_database_url_at_all_is_refused_clearly():
    with pytest.raises(ConfigurationError, match="is not a database URL") as refusal:
        make_engine("postgresql//billing:s3cret@db/league")
    assert "s3cret" not in str(refusal.value)


@pytest.mark.parametrize(
    "url, message",
    [
        ("postgresql://billing:s3cret@db/x", "password authentication failed: s3cret rejected"),
        (UNENCODED_AT, "failed to resolve host 'RETPW@127.0.0.1' (DBSEC@RETPW)"),
        ("postgresql://billing:p%40ss-word@db/x", "bad password p@ss-word or p%40ss-word"),
    ],
)
def test_no_fragment_of_the_password_survives_in_a_drivers_message(url, message):
    scrubbed = without_database_secrets(message, url)
    for fragment in ("s3cret", "DBSEC", "RETPW", "p@ss-word", "p%40ss-word", "ss-word"):
        assert fragment not in scrubbed
    assert "***" in scrubbed


def test_a_drivers_message_without_the_password_is_left_as_it_is():
    message = 'connection to server at "db" (10.0.0.5), port 5432 failed: Connection refused'
    assert without_database_secrets(message, "postgresql://billing:s3cret@db/x") == message
    assert without_database_secrets(message, "sqlite:///data/league.db") == message
