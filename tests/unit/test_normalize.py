"""URL normalisation: table of (input, expected), rejections, idempotence, host helpers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.logic.normalize import MAX_URL_LENGTH, host_of, normalize, normalize_host, normalize_url
from streams.errors import InvalidFieldError

pytestmark = pytest.mark.unit

CASES = [
    # scheme, case, default ports, root path
    ("https://example.com", "https://example.com/"),
    ("http://example.com/", "https://example.com/"),
    ("HTTPS://EXAMPLE.COM/Path", "https://example.com/Path"),
    ("HtTp://Example.Com:80/a", "https://example.com/a"),
    ("https://example.com:443/a", "https://example.com/a"),
    ("http://example.com:443/a", "https://example.com/a"),
    ("https://example.com:8443/a", "https://example.com:8443/a"),
    ("https://example.com:08080/a", "https://example.com:8080/a"),
    ("https://example.com:/a", "https://example.com/a"),
    ("https://example.com./a", "https://example.com/a"),
    ("  https://example.com/a  ", "https://example.com/a"),
    # www / mobile prefixes
    ("https://www.example.com/a", "https://example.com/a"),
    ("https://m.facebook.com/story.php?id=1", "https://facebook.com/story.php?id=1"),
    ("https://www.m.facebook.com/x", "https://facebook.com/x"),
    ("https://mobile.example.org/x", "https://example.org/x"),
    ("https://m.me/page", "https://m.me/page"),
    ("https://www.com/", "https://www.com/"),
    ("https://wwwexample.com/", "https://wwwexample.com/"),
    # fragment, trailing slash, dot segments, duplicate slashes
    ("https://example.com/a/b/#section", "https://example.com/a/b"),
    ("https://example.com/a///", "https://example.com/a"),
    ("https://example.com/#!/x", "https://example.com/"),
    ("https://example.com/a/./b/../c", "https://example.com/a/c"),
    ("https://example.com/../../a", "https://example.com/a"),
    ("https://example.com/a/b/..", "https://example.com/a"),
    ("https://example.com/a/%2E%2E/b", "https://example.com/b"),
    ("https://example.com/a//b", "https://example.com/a//b"),
    ("https://web.archive.org/web/2020/https://example.com/", "https://web.archive.org/web/2020/https://example.com"),
    # percent-encoding
    ("https://example.com/%7euser/%7E", "https://example.com/~user/~"),
    ("https://example.com/a%2fb", "https://example.com/a%2Fb"),
    ("https://example.com/%e2%82%ac", "https://example.com/%E2%82%AC"),
    ("https://example.com/café", "https://example.com/caf%C3%A9"),
    ("https://example.com/caf%c3%a9", "https://example.com/caf%C3%A9"),
    ("https://example.com/a%zz", "https://example.com/a%25zz"),
    ("https://example.com/a%41%62", "https://example.com/aAb"),
    ("https://example.com/a\"b<c>", "https://example.com/a%22b%3Cc%3E"),
    ("https://example.com/a?q=%c3%a9&r=%41", "https://example.com/a?q=%C3%A9&r=A"),
    ("https://example.com/?x[]=1", "https://example.com/?x%5B%5D=1"),
    # query: tracking, sort, blanks, repeats
    ("https://example.com/a?b=2&a=1", "https://example.com/a?a=1&b=2"),
    ("https://example.com/a?a=2&b=1&a=1", "https://example.com/a?a=2&a=1&b=1"),
    ("https://example.com/a?k=&j", "https://example.com/a?j&k="),
    ("https://example.com/a?&&a=1&", "https://example.com/a?a=1"),
    ("https://example.com/a?", "https://example.com/a"),
    ("https://example.com/a?q=a+b", "https://example.com/a?q=a+b"),
    ("https://example.com/a?x=1;y=2", "https://example.com/a?x=1;y=2"),
    ("https://example.com/a?utm_source=x&utm_medium=y&UTM_Campaign=z&id=3", "https://example.com/a?id=3"),
    ("https://example.com/a?fbclid=1&gclid=2&dclid=3&msclkid=4&igshid=5&id=9", "https://example.com/a?id=9"),
    ("https://example.com/a?mc_cid=1&mc_eid=2&_ga=3&yclid=4&spm=5&ref_src=6&ref_url=7", "https://example.com/a"),
    ("https://example.com/a?utm%5Fsource=x&id=1", "https://example.com/a?id=1"),
    ("https://example.com/a?s=1&t=2", "https://example.com/a?s=1&t=2"),
    ("https://example.com/a?q=x?y/z", "https://example.com/a?q=x?y/z"),
    # twitter / x
    ("https://twitter.com/user/status/123?s=20&t=AbC", "https://x.com/user/status/123"),
    ("https://mobile.twitter.com/user/status/123", "https://x.com/user/status/123"),
    ("http://www.twitter.com/user", "https://x.com/user"),
    ("https://x.com/user/status/123?s=46", "https://x.com/user/status/123"),
    ("https://help.twitter.com/en", "https://help.twitter.com/en"),
    ("https://t.co/AbCdEf", "https://t.co/AbCdEf"),
    # youtube
    ("https://www.youtube.com/watch?v=dQw4w9WgXcQ&feature=share", "https://youtube.com/watch?v=dQw4w9WgXcQ"),
    ("https://m.youtube.com/watch?v=dQw4w9WgXcQ&t=42s", "https://youtube.com/watch?v=dQw4w9WgXcQ"),
    ("https://youtu.be/dQw4w9WgXcQ", "https://youtube.com/watch?v=dQw4w9WgXcQ"),
    ("https://youtu.be/dQw4w9WgXcQ?si=abc&t=10", "https://youtube.com/watch?v=dQw4w9WgXcQ"),
    ("https://youtu.be/dQw4w9WgXcQ?list=PL1", "https://youtube.com/watch?list=PL1&v=dQw4w9WgXcQ"),
    ("https://youtu.be/dQw4w9WgXcQ?v=other", "https://youtube.com/watch?v=dQw4w9WgXcQ"),
    ("https://www.youtube.com/shorts/abc123?feature=share", "https://youtube.com/watch?v=abc123"),
    ("https://www.youtube.com/embed/abc123?start=5", "https://youtube.com/watch?start=5&v=abc123"),
    ("https://youtube.com/live/abc123/", "https://youtube.com/watch?v=abc123"),
    ("https://www.youtube-nocookie.com/embed/abc123", "https://youtube.com/watch?v=abc123"),
    ("https://www.youtube.com/embed/videoseries?list=PL1", "https://youtube.com/embed/videoseries?list=PL1"),
    ("https://www.youtube.com/@channel/live", "https://youtube.com/@channel/live"),
    ("https://youtu.be/", "https://youtu.be/"),
    ("https://youtu.be/a&b", "https://youtu.be/a&b"),
    ("https://youtu.be/a%C3%A9", "https://youtu.be/a%C3%A9"),
    ("https://www.youtube.com/watch?v=x&pp=ygU", "https://youtube.com/watch?v=x"),
    # facebook and other short links stay as they are
    ("https://fb.watch/abcDEF/", "https://fb.watch/abcDEF"),
    ("https://www.facebook.com/watch/?v=123&ref=sharing", "https://facebook.com/watch?ref=sharing&v=123"),
    # IDNA and IP literals
    ("https://Bücher.de/x", "https://xn--bcher-kva.de/x"),
    ("https://XN--BCHER-KVA.DE/x", "https://xn--bcher-kva.de/x"),
    ("https://\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\u3002com/", "https://example.com/"),  # full-width
    ("https://www.例え.jp/", "https://xn--r8jz45g.jp/"),
    ("http://192.168.0.1:8080/a", "https://192.168.0.1:8080/a"),
    ("http://[2001:DB8:0:0::1]:8080/a", "https://[2001:db8::1]:8080/a"),
    ("https://[::1]/", "https://[::1]/"),
    ("https://my_site.blogspot.com/", "https://my_site.blogspot.com/"),
]

REJECTED = [
    (None, "expected a string"),
    (42, "expected a string"),
    ("", "empty"),
    ("   ", "empty"),
    ("https://example.com/" + "a" * MAX_URL_LENGTH, "more than 4096"),
    ("https://example.com/a b", "whitespace U+0020"),
    ("https://example.com/a\tb", "U+0009"),
    ("https://exa\nmple.com/", "U+000A"),
    ("https://example.com/\x00", "U+0000"),
    ("https://example.com/\u200b", "U+200B"),
    ("https://example.com/a\xa0b", "U+00A0"),
    ("ftp://example.com/file", "scheme 'ftp' is not http or https"),
    ("javascript:alert(1)", "scheme 'javascript' is not http or https"),
    ("example.com/path", "has no scheme"),
    ("//example.com/path", "has no scheme"),
    ("youtube.com:443/x", "scheme 'youtube.com' is not http or https"),
    ("https:///path", "no host"),
    ("https:example.com", "no host"),
    ("https://:8080/", "no host"),
    ("https://example.com:abc/", "port 'abc'"),
    ("https://example.com:0/", "port '0'"),
    ("https://example.com:65536/", "port '65536'"),
    ("https://example.com:80:80/", "port '80:80'"),
    ("https://user:secret@example.com/", "user info"),
    ("https://@example.com/", "user info"),
    ("https://ex!ample.com/", "not allowed in a host name"),
    ("https://exa%6Dple.com/", "not allowed in a host name"),
    ("https://example..com/", "empty label"),
    ("https://.example.com/", "empty label"),
    ("https://example.com../", "empty label"),
    ("https://" + "a" * 64 + ".com/", "label longer than 63"),
    ("https://" + "a!" * 2000 + ".com/", "'" + "a!" * 40 + "'... has characters"),
    ("https://" + "a." * 130 + "com/", "more than 253"),
    ("https://" + "ü" * 70 + ".de/", "fails IDNA encoding"),
    ("https://[::1/", "cannot be parsed"),
    ("https://[zz::1]/", "cannot be parsed"),
]


@pytest.mark.parametrize(("url", "expected"), CASES)
def test_normalize_url(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


@pytest.mark.parametrize(("url", "expected"), CASES)
def test_idempotent(url: str, expected: str) -> None:
    once = normalize_url(url)
    assert normalize_url(once) == once


@pytest.mark.parametrize(("url", "expected"), CASES)
def test_normalize_returns_the_host_of_the_url(url: str, expected: str) -> None:
    result = normalize(url)
    assert result.url == expected
    assert result.host == host_of(expected)


@pytest.mark.parametrize(("url", "problem"), REJECTED)
def test_rejected(url: object, problem: str) -> None:
    with pytest.raises(InvalidFieldError) as info:
        normalize_url(url)  # type: ignore[arg-type]
    assert info.value.code == "INVALID_FIELD"
    assert info.value.message.startswith("url: ")
    assert problem in info.value.message


def test_rejection_never_echoes_credentials() -> None:
    with pytest.raises(InvalidFieldError) as info:
        normalize_url("https://alice:hunter2@example.com/")
    assert "hunter2" not in info.value.message
    assert "alice" not in info.value.message


def test_http_and_https_meet() -> None:
    assert normalize_url("http://www.example.com/a/") == normalize_url("https://example.com/a")


def test_longest_accepted_url() -> None:
    url = "https://example.com/" + "a" * (MAX_URL_LENGTH - len("https://example.com/"))
    assert normalize_url(url) == url


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("WWW.YouTube.COM", "youtube.com"),
        ("twitter.com", "x.com"),
        ("mobile.twitter.com", "x.com"),
        ("m.me", "m.me"),
        ("bücher.de.", "xn--bcher-kva.de"),
        ("drive.google.com", "drive.google.com"),
    ],
)
def test_normalize_host(host: str, expected: str) -> None:
    assert normalize_host(host) == expected


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://example.com/", "example.com"),
        ("https://example.com:8443/a?b", "example.com"),
        ("https://[2001:db8::1]:8080/", "[2001:db8::1]"),
        ("https://[::1]/", "[::1]"),
    ],
)
def test_host_of(url: str, host: str) -> None:
    assert host_of(url) == host


_PIECES = st.sampled_from([
    "/", "//", ".", "..", "%", "%2e", "%2F", "%41", "%zz", "?", "&", "=", "#", ":", "@", "[", "]", "+", ";",
    "a", "B", "é", "€", "www.", "m.", "twitter.com", "youtu.be", "youtube.com", "/shorts/", "/embed/",
    "utm_source", "v", "t", "s", "x", "1", "-", "_", "~", "!", "\\",
])


@settings(max_examples=400, deadline=None)
@given(
    scheme=st.sampled_from(["http://", "https://", "HTTPS://"]),
    authority=st.lists(_PIECES, max_size=6).map("".join),
    rest=st.lists(_PIECES, max_size=12).map("".join),
)
def test_any_url_is_rejected_cleanly_or_idempotent(scheme: str, authority: str, rest: str) -> None:
    """Whatever the input, the only failure is InvalidFieldError, and success is a fixed point."""
    try:
        once = normalize(scheme + authority + rest)
    except InvalidFieldError:
        return
    assert once.url.startswith("https://")
    assert normalize(once.url) == once
    assert host_of(once.url) == once.host


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text_never_crashes(text: str) -> None:
    """Junk input is rejected with the field error, never another exception."""
    try:
        once = normalize_url(text)
    except InvalidFieldError:
        return
    assert normalize_url(once) == once
