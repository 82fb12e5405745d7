"""--secure over the whole URL map: every route needs the key but the result feed and the poser page's static
files, so a route added later cannot be forgotten. --listen without --secure warns who can reach the server."""
from __future__ import annotations

import re

import pytest

from modules import security
from tests.full_app import full_app

KEY = "k" * 32
EXEMPT = {"/api/talkinghead/result_feed", "/api/talkinghead/avatars/<id>/result_feed", "/talkinghead/poser",
          "/talkinghead/poser/", "/talkinghead/poser/<path:filename>"}
SAMPLE = {"name": "joy", "filename": "index.html", "id": "default"}  # a value for each path variable


@pytest.fixture
def app(fake_engine):
    return full_app(fake_engine, secure=True, api_key=KEY)


def routes(app):
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: SAMPLE[m.group(1)], rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.rule, method, path


def call(client, method, path, headers):
    response = client.open(path, method=method, headers=headers, buffered=False)
    status = response.status_code
    body = response.get_json(silent=True) if status == 401 else None
    response.close()  # result_feed never ends
    return status, body


def test_every_route_but_the_feed_and_the_poser_page_needs_the_key(app):
    client = app.test_client()
    seen_exempt = set()
    for rule, method, path in routes(app):
        status, body = call(client, method, path, {"Origin": "http://x"})
        if rule in EXEMPT:
            seen_exempt.add(rule)
            assert status != 401, f"{method} {rule} must be reachable without the key"
        else:
            assert (status, body) == (401, {"error": "401: Invalid API key"}), f"{method} {rule} without the key"
            assert call(client, method, path, {"Authorization": "Bearer wrong"})[0] == 401
    assert seen_exempt == EXEMPT


def test_every_route_answers_with_the_key(app):
    client = app.test_client()
    for rule, method, path in routes(app):
        status, _ = call(client, method, path, {"Authorization": f"Bearer {KEY}"})
        assert status != 401, f"{method} {rule} refused the right key"


def test_exempt_list_is_only_the_feed_and_the_poser_page():
    assert security.EXEMPT_PATHS == {"/api/talkinghead/result_feed"}
    assert security.is_exempt("/talkinghead/poser/app.js") and not security.is_exempt("/talkinghead/poserx")
    assert not security.is_exempt("/api/talkinghead/templates")


def test_listen_without_secure_warns_who_can_reach_the_server():
    message = security.exposure_warning(listen=True, secure=False, port=5100)
    assert message.startswith("warning: --listen without --secure") and "port 5100" in message
    assert "network" in message and "--secure" in message and "\n" not in message
    assert security.exposure_warning(listen=True, secure=True, port=5100) is None
    assert security.exposure_warning(listen=False, secure=False, port=5100) is None
