"""Meta's media client against the local stand-in: two steps with the bearer token, a lapsed link
asked for again, expired media as "not captured", the token only to its own hosts."""

from __future__ import annotations

import pytest

from shared.adapters.meta_media import MetaMediaClient
from shared.adapters.retry_policy import RetryPolicy
from shared.domain.errors import ConfigurationError, TransientError
from shared.local.meta_server import LocalMeta

TOKEN = "test-system-user-token"


@pytest.fixture
def meta():
    with LocalMeta(TOKEN) as server:
        yield server


@pytest.fixture
def client(meta):
    sleeps: list[float] = []
    policy = RetryPolicy(max_attempts=3, backoff_factor=0.01, backoff_jitter=0, retry_statuses=frozenset({429, 503}))
    with MetaMediaClient(meta.base_url, "v26.0", TOKEN, policy=policy, sleep=sleeps.append) as media_client:
        media_client.sleeps = sleeps  # type: ignore[attr-defined]
        yield media_client


def test_media_is_looked_up_then_downloaded_in_chunks_with_the_token(meta, client):
    meta.add("1001", b"x" * 200_000, "image/jpeg", sha256_base64=True)
    description = client.describe("1001")
    assert description is not None and description.mime_type == "image/jpeg" and description.file_size == 200_000
    chunks = list(client.open_media("1001"))
    assert b"".join(chunks) == b"x" * 200_000 and len(chunks) > 1
    assert all(r.authorization == f"Bearer {TOKEN}" for r in meta.requests)


def test_a_link_that_lapsed_is_asked_for_again_once(meta, client):
    meta.add("1002", b"bytes", "audio/ogg")
    meta.url_lifetime = 0  # every link Meta hands out has already lapsed when it is used
    assert client.open_media("1002") is None  # asked twice, lapsed twice: not captured
    assert len([r for r in meta.requests if r.path.startswith("/v26.0/")]) == 2
    meta.url_lifetime = 300
    assert b"".join(client.open_media("1002")) == b"bytes"


@pytest.mark.parametrize("media_id", ["unknown-id", "../v26.0/me", "a/b", "", "x" * 129])
def test_an_unknown_expired_or_malformed_media_id_is_not_captured(meta, client, media_id):
    assert client.open_media(media_id) is None
    assert all(".." not in r.path for r in meta.requests)


def test_throttling_is_retried_as_the_policy_says_and_then_handed_to_the_queue(meta, client):
    meta.add("1003", b"ok", "image/png")
    meta.fail_next_lookups(429)
    assert b"".join(client.open_media("1003")) == b"ok" and len(client.sleeps) == 1
    meta.fail_next_lookups(503, 503, 503)
    with pytest.raises(TransientError):
        client.open_media("1003")


def test_a_refused_token_is_a_configuration_error(meta):
    meta.add("1004", b"ok", "image/png")
    with MetaMediaClient(meta.base_url, "v26.0", "wrong-token") as media_client, pytest.raises(ConfigurationError):
        media_client.open_media("1004")


@pytest.mark.parametrize("base_url", ["https://graph.facebook.com.evil.example", "http://graph.facebook.com",
                                      "https://user:pw@graph.facebook.com", "https://example.com"])
def test_the_token_goes_only_to_metas_graph_host_or_a_loopback_stand_in(base_url):
    with pytest.raises(ConfigurationError):
        MetaMediaClient(base_url, "v26.0", TOKEN)
    MetaMediaClient("https://graph.facebook.com", "v26.0", TOKEN).close()


def test_a_download_url_off_metas_media_host_is_never_fetched(meta, client, monkeypatch):
    from shared.adapters import meta_media

    meta.add("1005", b"secret media", "image/png")
    real = meta_media.MetaMediaClient.describe

    def elsewhere(self, media_id):
        found = real(self, media_id)
        return meta_media.MetaMedia(found.media_id, "https://attacker.example/steal", found.mime_type,
                                    found.sha256, found.file_size)

    monkeypatch.setattr(meta_media.MetaMediaClient, "describe", elsewhere)
    assert client.open_media("1005") is None and meta.downloads() == []


def test_without_an_access_token_media_cannot_be_fetched_and_says_which_setting():
    with pytest.raises(ConfigurationError, match="WHATSAPP_ACCESS_TOKEN"):
        MetaMediaClient("https://graph.facebook.com", "v26.0", "")
