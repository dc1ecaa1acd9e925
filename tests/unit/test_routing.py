"""Operator routing: longest dot-suffix match, explicit operator, the shipped registry."""

from __future__ import annotations

import pytest

from agents.logic.normalize import normalize
from agents.logic.routing import HostRouter, resolve_operator
from streams.config import Settings
from streams.errors import ConfigError
from streams.registry import Registry

pytestmark = pytest.mark.unit

HOSTS = {
    "youtube.com": "google",
    "google.com": "google",
    "drive.google.com": "drive",
    "a.drive.google.com": "deep",
    "co.uk": "registry-of-uk",
    "x.com": "twitter",
    "twitter.com": "twitter",
}
ROUTER = HostRouter(HOSTS)
KNOWN = {"google", "drive", "deep", "twitter", "meta"}


@pytest.mark.parametrize(
    ("host", "operator"),
    [
        ("youtube.com", "google"),
        ("a.youtube.com", "google"),
        ("a.b.youtube.com", "google"),
        ("evilyoutube.com", None),
        ("youtube.com.evil.net", None),
        ("youtube.co", None),
        ("com", None),
        ("google.com", "google"),
        ("mail.google.com", "google"),
        ("drive.google.com", "drive"),
        ("x.drive.google.com", "drive"),
        ("a.drive.google.com", "deep"),
        ("z.a.drive.google.com", "deep"),
        ("bdrive.google.com", "google"),
        ("example.co.uk", "registry-of-uk"),
        ("x.com", "twitter"),
        ("help.x.com", "twitter"),
        ("example.org", None),
        ("localhost", None),
        ("192.168.0.1", None),
        ("[::1]", None),
        ("", None),
    ],
)
def test_route_by_longest_dot_suffix(host: str, operator: str | None) -> None:
    assert ROUTER.route(host) == operator


def test_router_keys_are_normalised_hosts() -> None:
    router = HostRouter({"www.example.com": "ex", "mobile.twitter.com": "twitter"})
    assert router.route("example.com") == "ex"
    assert router.route("x.com") == "twitter"
    assert len(router) == 2


def test_two_operators_on_one_normalised_host_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="belongs to both"):
        HostRouter({"twitter.com": "a", "x.com": "b"})


def test_invalid_host_in_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="bad!host"):
        HostRouter({"bad!host.com": "a"})


@pytest.mark.parametrize(
    ("explicit", "host", "operator"),
    [
        ("drive", "youtube.com", "drive"),
        ("meta", "unknown.org", "meta"),
        (None, "youtube.com", "google"),
        ("", "youtube.com", "google"),
        ("nobody", "youtube.com", "google"),
        ("nobody", "unknown.org", None),
        (None, "unknown.org", None),
    ],
)
def test_resolve_operator(explicit: str | None, host: str, operator: str | None) -> None:
    assert resolve_operator(explicit, host, KNOWN, ROUTER) == operator


@pytest.fixture(scope="module")
def registry() -> Registry:
    settings = Settings()
    return Registry.load(settings.reporters_path, settings.operators_path)


@pytest.mark.parametrize(
    ("url", "operator"),
    [
        ("https://www.youtube.com/watch?v=dQw4w9WgXcQ", "google"),
        ("https://youtu.be/dQw4w9WgXcQ", "google"),
        ("https://m.youtube.com/shorts/abc", "google"),
        ("https://www.youtube-nocookie.com/embed/abc", "google"),
        ("https://docs.google.com/document/d/1", "google"),
        ("https://someone.blogspot.com/2024/01/post.html", "google"),
        ("https://m.facebook.com/story.php?id=1", "meta"),
        ("https://fb.watch/abc/", "meta"),
        ("https://m.me/somepage", "meta"),
        ("https://www.instagram.com/p/xyz/", "meta"),
        ("https://mobile.twitter.com/u/status/1", "twitter"),
        ("https://x.com/u/status/1", "twitter"),
        ("https://t.co/abc", "twitter"),
        ("https://podcasts.apple.com/podcast/1", "apple"),
        ("https://www.icloud.com/photos", "apple"),
        ("https://onedrive.live.com/?id=1", "microsoft"),
        ("https://www.linkedin.com/posts/x", "microsoft"),
        ("https://github.com/a/b", "microsoft"),
        ("https://evilyoutube.com/watch?v=1", None),
        ("https://youtube.com.evil.net/", None),
        ("https://example.org/", None),
        ("https://xn--bcher-kva.de/", None),
    ],
)
def test_default_registry_routes_normalised_urls(registry: Registry, url: str, operator: str | None) -> None:
    router = HostRouter(registry.host_index())
    normalized = normalize(url)
    assert resolve_operator(None, normalized.host, registry.operators, router) == operator


def test_default_registry_explicit_operator_wins(registry: Registry) -> None:
    router = HostRouter(registry.host_index())
    assert resolve_operator("apple", "youtube.com", registry.operators, router) == "apple"
    assert resolve_operator("not-registered", "youtube.com", registry.operators, router) == "google"


def test_default_registry_every_host_routes_to_its_operator(registry: Registry) -> None:
    router = HostRouter(registry.host_index())
    for operator in registry.operators.values():
        for host in operator.hosts:
            assert router.route(normalize(f"https://{host}/").host) == operator.id
            assert router.route("sub." + normalize(f"https://{host}/").host) == operator.id
