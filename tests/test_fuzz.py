"""Bounded fuzzing of every JSON, multipart and query route from /api/openapi.json (schemathesis): valid and
invalid requests, each answered without a 5xx, a stack trace or an internal repr, with a documented status,
and the render thread alive. `bench/fuzz_long.py` runs the same for as long as you like."""
from __future__ import annotations

import io
import time

import pytest

from conftest import need_module

schemathesis = need_module("schemathesis", "pip install -r requirements-test.txt")  # fails under CI=true

from modules import openapi  # noqa: E402
from talkinghead import encode  # noqa: E402
from tests import fuzzing  # noqa: E402
from tests.full_app import full_app  # noqa: E402

EXAMPLES = 25  # per route and generation mode (valid, invalid): ~550 cases, ~15 s on 2 cores
SCHEMA = schemathesis.openapi.from_dict(openapi.full_document())
OPERATIONS = fuzzing.operations(SCHEMA)
TALLY = fuzzing.Tally()


@pytest.fixture(scope="module")
def engine():
    engine = fuzzing.make_engine()
    yield engine
    engine.close()


AVATAR = "fuzzed"  # an avatar besides the default one, whose routes are fuzzed with its id


@pytest.fixture(scope="module")
def app(engine):
    app = full_app(engine, talkinghead_max_avatars=3)  # fuzzed POSTs make avatars: a few are enough
    app.extensions["talkinghead_avatars"].create(AVATAR)
    SCHEMA.app = app  # cases are sent through the app's WSGI interface
    yield app
    fuzzing.close_extras(app)


def test_every_route_but_the_feed_is_fuzzed():
    described = {f"{m.upper()} {p}" for p, item in openapi.full_document()["paths"].items() for m in item}
    assert set(OPERATIONS) == described - {f"GET {feed}" for feed in fuzzing.FEEDS}


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_fuzz(app, engine, name):
    fuzzing.fuzz_operation(app, engine, OPERATIONS[name], max_examples=EXAMPLES, tally=TALLY)


def test_fuzzed_uploads_never_replace_the_character(app, engine):
    before = engine.poser.image.copy()
    tally = fuzzing.fuzz_operation(app, engine, OPERATIONS["POST /api/talkinghead/load"], max_examples=EXAMPLES)
    assert 200 not in tally.by_status, "a fuzzed upload was taken as a character"
    assert (engine.poser.image == before).all()


@pytest.mark.parametrize("name", sorted(n for n in OPERATIONS if "/avatars/{id}/" in n))
def test_fuzz_an_avatar_that_exists(app, engine, name):
    """The routes of one avatar with its id: the cases reach the checks of each route, not only the 404."""
    fuzzing.fuzz_operation(app, engine, OPERATIONS[name], max_examples=EXAMPLES, tally=TALLY,
                           path_parameters={"id": AVATAR})


@pytest.mark.parametrize("method, path", fuzzing.json_routes())
def test_fuzz_any_json(app, engine, method, path):
    fuzzing.fuzz_json_values(app, engine, method, path, max_examples=EXAMPLES * 2, tally=TALLY, avatar=AVATAR)


@pytest.mark.parametrize("path", [fuzzing.FEED, fuzzing.AVATAR_FEED.replace("{id}", AVATAR)])
def test_fuzz_result_feed_query(app, engine, path):
    tally = fuzzing.fuzz_result_feed(app, engine, max_examples=40, path=path)
    assert tally.by_status.get(200) and tally.by_status.get(400)


def test_fuzzing_ran_cases_and_the_character_survived(app, engine):
    """After everything above: cases ran (run on its own, it fuzzes every route first), the render thread is
    alive, and the engine still makes frames once resumed (a fuzzed `unload` may have paused it)."""
    if TALLY.cases == 0:  # selected on its own (-k): nothing ran before it in this module
        for op in OPERATIONS.values():
            fuzzing.fuzz_operation(app, engine, op, max_examples=EXAMPLES, tally=TALLY)
    assert TALLY.cases > 10 * len(OPERATIONS), TALLY
    assert engine.renderer._thread is not None and engine.renderer._thread.is_alive(), "the render thread died"
    client = app.test_client()
    assert client.post("/api/talkinghead/load", data={"file": (io.BytesIO(encode.png(engine.poser.image)),
                                                               "talkinghead.png")}).get_data(as_text=True) == "OK"
    seq = engine.slot.latest().seq
    deadline = time.monotonic() + 10
    while engine.slot.latest().seq < seq + 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.slot.latest().seq >= seq + 3, "no new frames after load"
    stats = client.get("/api/talkinghead/stats").get_json()
    assert stats["state"] == "running" and stats["last_error"] is None, stats
    print(f"fuzz: {TALLY.cases} cases, by status {dict(sorted(TALLY.by_status.items()))}")
