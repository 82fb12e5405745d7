"""Fuzzing every route from the OpenAPI document (schemathesis + hypothesis), on a fast fake engine.

Used by tests/test_fuzz.py (a bounded run in CI) and bench/fuzz_long.py (as long as you like). A case fails
on: a 5xx, a stack trace or an internal repr (`<... at 0x...>`) in the body, an error that is not JSON
`{"error": "..."}`, a status the document does not list for the route, or a render thread that died.
`result_feed` (an endless stream) is fuzzed by `fuzz_result_feed`, reading one part.
"""
from __future__ import annotations

import re
from urllib.parse import quote
from dataclasses import dataclass, field

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.errors import Unsatisfiable

from modules import openapi
from talkinghead import stream

FEED = "/api/talkinghead/result_feed"
AVATAR_FEED = "/api/talkinghead/avatars/{id}/result_feed"
FEEDS = (FEED, AVATAR_FEED)  # endless streams: fuzz_result_feed, not fuzz_operation
_TRACE = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")
_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>|\bat 0x[0-9a-fA-F]{6,}")


@dataclass
class Tally:
    cases: int = 0
    by_status: dict = field(default_factory=dict)

    def add(self, status: int) -> None:
        self.cases += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1


def make_engine(seed: int = 1):
    """A running engine on the fake poser (no delay) with an opaque-square character."""
    from talkinghead.engine import TalkingHead
    from tests.conftest import FakePoser

    image = np.zeros((512, 512, 4), np.uint8)
    image[128:384, 128:384] = (200, 100, 50, 255)
    engine = TalkingHead(FakePoser(), description={"backend": "fake", "device": "cpu", "model": "fake"}, seed=seed)
    engine.start(image)
    return engine


def close_extras(app) -> None:
    """What fuzzed requests may have started besides the engine: avatars and each avatar's capture (a UDP
    listener), the default avatar's included."""
    avatars = app.extensions.get("talkinghead_avatars")
    if avatars is not None:
        avatars.close()


def operations(schema) -> dict[str, object]:
    """'METHOD /path' -> schemathesis operation, result_feed left out."""
    ops = {}
    for result in schema.get_all_operations():
        op = result.ok()
        if op.path not in FEEDS:
            ops[f"{op.method.upper()} {op.path}"] = op
    return ops


def load_schema(app):
    import schemathesis

    return schemathesis.openapi.from_wsgi("/api/openapi.json", app)


def problems(status: int, content_type: str, body: bytes, documented: set[str], engine,
             location: str | None = None) -> list[str]:
    """What is wrong with one answer (empty: nothing). A 308 with a Location is Werkzeug merging a doubled
    slash (a path parameter that starts with "/"), on any route: not a finding."""
    found = []
    if status == 308 and location:
        documented = documented | {"308"}
    text = body.decode("utf-8", "replace") if not content_type.startswith(("image/", "application/zip")) else ""
    if status >= 500:
        found.append(f"server error {status}")
    if str(status) not in documented:
        found.append(f"status {status} is not in the document (has {', '.join(sorted(documented))})")
    if _TRACE.search(text):
        found.append("a stack trace in the body")
    if _REPR.search(text):
        found.append(f"an internal repr in the body: {_REPR.search(text).group(0)}")
    if status >= 400:
        if not content_type.startswith("application/json"):
            found.append(f"error as {content_type}, not JSON")
        elif not re.match(rb'\{\s*"error"\s*:\s*"', body):
            found.append("error body is not {\"error\": ...}")
    thread = engine.renderer._thread
    if thread is not None and not thread.is_alive():
        found.append("the render thread died")
    return found


def fuzz_operation(app, engine, op, *, max_examples: int, modes=("positive", "negative"), derandomize: bool = True,
                   tally: Tally | None = None, path_parameters: dict | None = None) -> Tally:
    """Run max_examples cases per generation mode against one operation; AssertionError on the first problem
    (hypothesis shrinks it to a small example). path_parameters: values that replace the generated ones (an
    avatar that exists, so that the cases reach its routes' checks and not only the 404)."""
    from schemathesis import GenerationMode

    tally = tally or Tally()
    documented = set(op.definition.raw["responses"])
    if not (op.definition.raw.get("parameters") or op.definition.raw.get("requestBody")):
        modes, max_examples = ("positive",), 1  # nothing to vary: one call
    for mode in modes:
        @settings(max_examples=max_examples, deadline=None, database=None, derandomize=derandomize,
                  suppress_health_check=list(HealthCheck), print_blob=True)
        @given(case=op.as_strategy(generation_mode=GenerationMode(mode)))
        def run(case):
            if path_parameters:
                case.path_parameters = {**(case.path_parameters or {}), **path_parameters}
            response = case.call(app=app)  # through the WSGI interface, no socket
            body = response.content
            tally.add(response.status_code)
            content_type = (response.headers.get("content-type") or [""])[0]
            location = (response.headers.get("location") or [None])[0]
            found = problems(response.status_code, content_type, body, documented, engine, location)
            assert not found, f"{case.method} {case.formatted_path}: {'; '.join(found)}\n{body[:500]!r}"

        try:
            run()
        except Unsatisfiable:
            if mode == "positive":
                raise  # negative: every value is valid (a free string), nothing to generate
    return tally


def json_routes() -> list[tuple[str, str]]:
    """(method, path) of every route that takes a JSON body."""
    return [(method, path) for path, item in openapi.full_document()["paths"].items() for method, op in item.items()
            if "application/json" in op.get("requestBody", {}).get("content", {})]


_ODD_NUMBERS = [10**40, -10**40, 2**63, 2**64, 10**400, 1e308, -1e308, 3.5e38, -0.0, 1e-320]


def _scalars():
    return st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
                     st.sampled_from(_ODD_NUMBERS))


def _hostile_json(keys: list[str]):
    """Any JSON, with the names the routes know as keys (so values reach the validators)."""
    key = st.one_of(st.sampled_from(keys), st.text(max_size=10))
    values = st.recursive(_scalars(), lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(key, inner, max_size=5), max_leaves=12)
    return st.one_of(st.dictionaries(key, values, max_size=5), values)


def _shaped(schema: dict):
    """The schema's shape (its objects, keys and arrays) with any value at each leaf: numbers beyond float32,
    float64 and int64, wrong types, nesting where a number belongs."""
    numbers = st.sampled_from([*_ODD_NUMBERS, 0, 1, -1, 0.5])
    leaf = st.one_of(numbers, _scalars(), st.lists(_scalars(), max_size=3),
                     st.dictionaries(st.text(max_size=5), _scalars(), max_size=2))
    if schema.get("type") == "object":
        from talkinghead import emotions

        shapes = []
        if schema.get("properties"):
            shapes.append(st.fixed_dictionaries({}, optional={k: _shaped(v) for k, v in schema["properties"].items()}))
        if isinstance(schema.get("additionalProperties"), dict):
            key = st.one_of(st.sampled_from(list(emotions.EMOTIONS)), st.text(max_size=8))
            shapes.append(st.dictionaries(key, _shaped(schema["additionalProperties"]), max_size=3))
        return st.one_of(*shapes, leaf) if shapes else leaf
    if schema.get("type") == "array":
        return st.one_of(st.lists(_shaped(schema.get("items", {})), max_size=4), leaf)
    return leaf


def fuzz_json_values(app, engine, method: str, path: str, *, max_examples: int, derandomize: bool = True,
                     tally: Tally | None = None, avatar: str = "default") -> Tally:
    """Hypothesis alone: any JSON (of the right Content-Type) to a JSON route (an avatar's: `avatar`'s)."""
    from talkinghead import emotions, pose as pose_mod
    from talkinghead.settings import AnimatorSettings
    import dataclasses

    tally = tally or Tally()
    client = app.test_client()
    keys = ["text", "emotion_name", "pose", "emotion", *emotions.EMOTIONS, *pose_mod.NAMES,
            *(f.name for f in dataclasses.fields(AnimatorSettings))]
    op = openapi.full_document()["paths"][path][method]
    documented = set(op["responses"])
    shape = op["requestBody"]["content"]["application/json"]["schema"]
    names = st.one_of(st.sampled_from(list(emotions.EMOTIONS)), st.text(min_size=1, max_size=12))

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=derandomize,
              suppress_health_check=list(HealthCheck))
    @given(body=st.one_of(_shaped(shape), _hostile_json(keys)), name=names)
    def run(body, name):
        url = path.replace("{name}", quote(name, safe="")).replace("{id}", avatar)
        response = client.open(url, method=method.upper(), json=body)
        tally.add(response.status_code)
        found = problems(response.status_code, response.content_type or "", response.get_data(),
                         documented | {"404"} if "{name}" in path else documented, engine,
                         response.headers.get("Location"))
        assert not found, f"{method.upper()} {url} {body!r:.300}: {'; '.join(found)}"

    run()
    return tally


def fuzz_result_feed(app, engine, *, max_examples: int, path: str = FEED) -> Tally:
    """Odd format/bg values: a 400 JSON, or a stream whose first part is an image (path: one of FEEDS, with the
    avatar's id in it)."""
    tally = Tally()
    client = app.test_client()
    values = st.one_of(st.none(), st.sampled_from(["png", "jpeg", "jpg", "PNG", "gif", ""]), st.text(max_size=12))
    colours = st.one_of(st.none(), st.from_regex(r"#?[0-9a-fA-F]{6}", fullmatch=True), st.text(max_size=10))

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(fmt=values, bg=colours)
    def run(fmt, bg):
        query = {k: v for k, v in (("format", fmt), ("bg", bg)) if v is not None}
        response = client.get(path, query_string=query, buffered=False)
        try:
            tally.add(response.status_code)
            if response.status_code == 200:
                (headers, payload), = stream.PartReader(response.response).read(1)
                assert headers["Content-Type"] in ("image/png", "image/jpeg") and len(payload) > 100
            else:
                body = response.get_data()
                found = problems(response.status_code, response.content_type or "", body, {"200", "400"}, engine)
                assert not found, f"result_feed {query}: {'; '.join(found)}"
        finally:
            response.close()

    run()
    return tally
