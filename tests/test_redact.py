"""What outputs may show: member names as parsed, URLs without userinfo or query."""

from __future__ import annotations

import pytest

from sidecar.core.redact import UNRECOGNISED_MEMBER, redacted_url, shown_member

URLS = [
    ("plain", "http://keycloak:9000", "http://keycloak:9000"),
    ("userinfo", "https://admin:s3cret@kc:9000/auth", "https://kc:9000/auth"),
    ("user only", "https://token@kc", "https://kc"),
    ("query", "http://kc:8080/auth?access_token=abc&x=1", "http://kc:8080/auth?REDACTED"),
    ("both", "http://u:p@kc/?t=1", "http://kc/?REDACTED"),
    ("fragment", "http://kc/#secret", "http://kc/?REDACTED"),
    ("at sign in the query", "http://kc/a?x=u@h", "http://kc/a?REDACTED"),
    ("no scheme", "u:p@kc:8080", "kc:8080"),
    ("empty", "", ""),
]


@pytest.mark.parametrize(("url", "shown"), [c[1:] for c in URLS], ids=[c[0] for c in URLS])
def test_redacted_url(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


MEMBERS = [
    ("quarkus", "keycloak-0-12345", "keycloak-0-12345"),
    ("wildfly node/cluster", "keycloak-controller-559a8/keycloak",
     "keycloak-controller-559a8/keycloak"),
    ("topology suffix", "kc-0-32308(site-id=k8s, rack-id=keycloak)", "kc-0-32308"),
    ("uuid", "35f6bdae-df5c-93e9-ead6-7f14873d346f", "35f6bdae-df5c-93e9-ead6-7f14873d346f"),
    ("raw text", "password=hunter2 user admin", UNRECOGNISED_MEMBER),
    ("quotes", 'a"b', UNRECOGNISED_MEMBER),
    ("too long", "a" * 254, UNRECOGNISED_MEMBER),
    ("empty", "", UNRECOGNISED_MEMBER),
]


@pytest.mark.parametrize(("member", "shown"), [c[1:] for c in MEMBERS],
                         ids=[c[0] for c in MEMBERS])
def test_shown_member(member: str, shown: str) -> None:
    assert shown_member(member) == shown
