from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plaza.links.urls import InvalidUrl, normalise_url

OWN = frozenset({"sho.rt"})
BLOCKED = frozenset({"evil.example"})


def norm(url: str) -> str:
    return normalise_url(url, own_hosts=OWN, blocked_hosts=BLOCKED)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HTTPS://Example.COM/Some/Path?q=1", "https://example.com/Some/Path?q=1"),
        ("https://Bücher.example/ä?q=ü", "https://xn--bcher-kva.example/%C3%A4?q=%C3%BC"),
        ("http://example.com:80/x", "http://example.com/x"),
        ("https://example.com:443", "https://example.com"),
        ("https://example.com:8443/x", "https://example.com:8443/x"),
        ("  https://example.com/a#frag  ", "https://example.com/a#frag"),
        ("http://[2001:DB8::1]:8080/", "http://[2001:db8::1]:8080/"),
        ("http://192.0.2.1/", "http://192.0.2.1/"),
        ("https://example.com/already%20encoded", "https://example.com/already%20encoded"),
    ],
)
def test_accepted_urls_are_normalised(raw: str, expected: str) -> None:
    assert norm(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("javascript:alert(1)", "invalid_url"),
        ("data:text/html,hi", "invalid_url"),
        ("ftp://example.com/", "invalid_url"),
        ("mailto:a@example.com", "invalid_url"),
        ("http://", "invalid_url"),
        ("https:///path", "invalid_url"),
        ("//example.com", "invalid_url"),
        ("example.com", "invalid_url"),
        ("http://exa mple.com", "invalid_url"),
        ("https://user:pass@example.com/", "invalid_url"),
        ("https://example.com:0/", "invalid_url"),
        ("https://example.com:70000/", "invalid_url"),
        ("https://exa_mple..com/", "invalid_url"),
        ("https://example.com/\x00", "invalid_url"),
        ("https://example.com/" + "a" * 2030, "invalid_url"),
        ("https://SHO.RT/abc1234", "redirect_loop"),
        ("http://sho.rt:8080/x", "redirect_loop"),
        ("https://evil.example/", "blocked_url"),
        ("https://deep.sub.evil.example/x", "blocked_url"),
    ],
)
def test_rejected_urls_say_why(raw: str, code: str) -> None:
    with pytest.raises(InvalidUrl) as caught:
        norm(raw)
    assert caught.value.code == code


def test_a_lookalike_of_a_blocked_host_is_not_blocked() -> None:
    assert norm("https://notevil.example/") == "https://notevil.example/"


hosts = st.from_regex(r"[a-zA-Z0-9]{1,12}(\.[a-zA-Z]{2,6}){1,2}", fullmatch=True)
paths = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Zs", "Cs")), max_size=40)


@given(st.sampled_from(["http", "https", "HTTP"]), hosts, paths)
def test_normalising_twice_changes_nothing(scheme: str, host: str, path: str) -> None:
    try:
        once = norm(f"{scheme}://{host}/{path}")
    except InvalidUrl:
        return
    assert norm(once) == once
