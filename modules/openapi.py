"""GET /api/openapi.json: the OpenAPI 3 description of every route (docs/api.md says the same in prose).

`full_document()` describes every route of every module; the served document keeps the routes this server
has (its enabled modules). tests/test_openapi.py holds it equal to the app's URL map, so a route added
without a description fails the tests; tests/test_fuzz.py generates requests from it.
"""
from __future__ import annotations

import dataclasses
import re

from flask import Blueprint, current_app, jsonify

from talkinghead import emotions, lipsync, pose as pose_mod
from talkinghead.settings import AnimatorSettings

blueprint = Blueprint("openapi", __name__)
VERSION = "1.0.0"


@blueprint.get("/api/openapi.json")
def openapi_json():
    return jsonify(document_for(current_app))


def document_for(app) -> dict:
    """The full document less the routes this app does not have (modules not enabled)."""
    doc = full_document()
    have = set(operations_of(app))
    paths = {}
    for path, item in doc["paths"].items():
        kept = {method: op for method, op in item.items() if (path, method) in have}
        if kept:
            paths[path] = kept
    return {**doc, "paths": paths}


def operations_of(app) -> list[tuple[str, str]]:
    """(OpenAPI path, lower-case method) of every route of a Flask app, HEAD and OPTIONS left out."""
    ops = []
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        ops += [(path, m.lower()) for m in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return ops


# -- building blocks ----------------------------------------------------------------------------------------
ERROR = {"$ref": "#/components/schemas/Error"}
_WHY = {400: "a bad field, option or upload; the message says what to fix, nothing changed",
        401: "--secure: missing or wrong API key",
        404: "no such file or path", 409: "the avatar exists already, or is the default one (never deleted)",
        413: "the request body is over the limit (images and JSON 8 MB, /lipsync 32 MB: --max-content-length)",
        415: "the body is not JSON (Content-Type: application/json)",
        503: "the server already streams to --talkinghead-max-viewers viewers (default 60, all streams together); "
             "the message says the cap",
        429: "as many avatars as --talkinghead-max-avatars (default 8, the default avatar included); delete one",
        500: "could not save (disk full, read-only folder); the saved file is unchanged"}


def _errors(*codes: int, why: dict[int, str] | None = None) -> dict:
    why = {**_WHY, **(why or {})}
    return {str(c): {"description": why[c], "content": {"application/json": {"schema": ERROR}}} for c in codes}


def _text(example: str, description: str = "done") -> dict:
    return {"200": {"description": description,
                    "content": {"text/plain": {"schema": {"type": "string"}, "example": example}}}}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"200": {"description": description, "content": {"application/json": {"schema": schema}}}}


def _json_body(schema: dict, required: bool = True) -> dict:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, responses: dict, *, tag: str, secured: bool = True, **extra) -> dict:
    op = {"summary": summary, "tags": [tag], "responses": responses, **extra}
    if secured:
        op["responses"] = {**responses, **_errors(401)}
    else:
        op["security"] = []  # exempt from --secure
    return op


def _obj(properties: dict, required: tuple[str, ...] = (), additional=False) -> dict:
    schema = {"type": "object", "properties": properties, "additionalProperties": additional}
    if required:
        schema["required"] = list(required)
    return schema


_MOCAP_STATE = {"type": "object", "properties": {
    "source": {"type": "string", "nullable": True}, "running": {"type": "boolean"},
    "port": {"type": "integer", "description": "the UDP port it listens on, while running"},
    "packets": {"type": "integer"}, "packets_per_s": {"type": "integer"}, "dropped": {"type": "integer"},
    "last_packet_age_s": {"type": "number", "nullable": True}, "driving": {"type": "boolean"},
    "values": {"type": "object", "nullable": True}}}


_MOCAP_WHY = {400: "a bad key or value, no capture yet to calibrate, or a port that cannot be bound (another "
                   "program's, or refused); nothing changed",
              409: "the port is another avatar's capture (named in the message), which keeps running: stop it or "
                   "choose another port; this avatar's capture is unchanged"}


def _pose_schema() -> dict:
    """{morph: value} with each of the 45 names and its range; names left out are 0."""
    props = {name: {"type": "number", "minimum": float(pose_mod.LOW[i]), "maximum": float(pose_mod.HIGH[i])}
             for i, name in enumerate(pose_mod.NAMES)}
    return _obj(props)


def _settings_schema() -> dict:
    props = {}
    for f in dataclasses.fields(AnimatorSettings):
        meta = f.metadata
        if meta["kind"] in ("int", "float"):
            s = {"type": "integer" if meta["kind"] == "int" else "number",
                 "minimum": meta["low"], "maximum": meta["high"]}
        elif meta["kind"] == "choice":
            s = {"type": "string", "enum": list(meta["choices"])}
        else:
            s = {"type": "array", "items": {"type": "string", "enum": list(meta["choices"])}, "uniqueItems": True}
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        props[f.name] = {**s, "default": default, "description": meta["doc"]}
    return _obj(props)


_TRACK = {"type": "object", "description": "10 ms frames: mouth openness and the five vowel weights, 0..1",
          "properties": {k: {"type": "array", "items": {"type": "number"}} for k in ("open", *lipsync.VOWELS)}}
_FLAG = {"type": "string", "enum": ["0", "1", "true", "false", "yes", "no", "on", "off"], "default": "0"}
_LIPSYNC_OPTIONS = {
    "start": {"type": "string", "enum": ["now", "next_talking"], "default": "now",
              "description": "now: the mouth follows the audio from when the request came; next_talking: from "
                             "the next start_talking"},
    "offset_ms": {"type": "number", "minimum": 0, "maximum": lipsync.MAX_DURATION_S * 1000, "default": 0,
                  "description": "how far playback already is (in the audio's own time)"},
    "rate": {"type": "number", "minimum": 0.25, "maximum": 4, "default": 1,
             "description": "the playback rate (an audio element's playbackRate): the mouth follows the audio "
                            "played this many times as fast"},
    "track": {**_FLAG, "description": "1: include the 10 ms track in the answer"},
    "analyze_only": {**_FLAG, "description": "1: only analyse (the answer has the track); the avatar is not touched"},
}
_EMOTION = {"type": "string", "enum": list(emotions.EMOTIONS)}
_TEMPLATE_NAME = {"name": "name", "in": "path", "required": True, "schema": _EMOTION,
                  "description": "an emotion name, e.g. joy (another name: 400; one with a line break: 404)"}
_TEMPLATE_ANSWER = _obj({"emotion": _EMOTION, "template": {"type": "object"}, "persistent": {"type": "boolean"}},
                        ("emotion", "template"))


_AVATAR_ID = {"name": "id", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"},
              "description": "the avatar's id (`default`: the one the routes without an id act on)"}
_NO_AVATAR = {404: "no avatar with this id"}
_AVATAR_ANSWER = _obj({"id": {"type": "string"}}, ("id",))


def _avatar_paths(paths: dict) -> dict:
    """The avatars (list, make, delete), and each avatar's own routes: those of the default avatar under
    /api/talkinghead/avatars/{id}/, with the same body and answer (modules/talkinghead/routes.py, per_avatar)."""
    from modules.talkinghead import mocap_routes  # noqa: F401  registers its per-avatar rule (/mocap) on import
    from modules.talkinghead.routes import PER_AVATAR

    th = "avatars"
    listed = _obj({"avatars": {"type": "array", "items": _obj(
        {"id": {"type": "string"}, "emotion": {"type": "string"}, "talking": {"type": "boolean"},
         "viewers": {"type": "integer"}}, ("id", "emotion", "talking", "viewers"))},
        "max_avatars": {"type": "integer"}}, ("avatars", "max_avatars"))
    made = {"201": {"description": "made; it shows the default character (or the image sent) and runs",
                    "content": {"application/json": {"schema": _AVATAR_ANSWER}}}}
    own = {}
    for rule in PER_AVATAR:
        for method, op in paths[f"/api/talkinghead{rule}"].items():
            op = {**op, "summary": f"one avatar: {op['summary']}", "tags": [th],
                  "parameters": [_AVATAR_ID, *op.get("parameters", [])],
                  "responses": {**op["responses"], **_errors(404, why=_NO_AVATAR)}}
            own.setdefault(f"/api/talkinghead/avatars/{{id}}{rule}", {})[method] = op
    return {
        "/api/talkinghead/avatars": {
            "get": _op("the avatars: id, emotion, talking, viewers; and the cap", _json(listed), tag=th),
            "post": _op(
                "make an avatar: JSON {\"id\"} (id optional: one is made), or multipart with the image as `file` "
                "and the id as form field `id`",
                {**made, **_errors(400, 409, 413, 415, 429)}, tag=th, requestBody={"required": False, "content": {
                    "application/json": {"schema": _obj({"id": _AVATAR_ID["schema"]})},
                    "multipart/form-data": {"schema": _obj({"file": {"type": "string", "format": "binary"},
                                                            "id": _AVATAR_ID["schema"]})}}})},
        "/api/talkinghead/avatars/{id}": {
            "put": _op("make the avatar if it is missing (201), else nothing (200)",
                       {**_json(_AVATAR_ANSWER, "it exists already"), **made, **_errors(400, 429)}, tag=th,
                       parameters=[_AVATAR_ID]),
            "delete": _op("delete the avatar: its threads and memory go, its viewers' streams end",
                          {**_json(_obj({"id": {"type": "string"}, "deleted": {"type": "boolean"}},
                                        ("id", "deleted"))), **_errors(404, 409, why=_NO_AVATAR)},
                          tag=th, parameters=[_AVATAR_ID])},
        **own,
    }


def full_document() -> dict:
    th = "talkinghead"
    templates = {"type": "object", "additionalProperties": _pose_schema(),
                 "description": "{emotion: {morph: value}} (emotion: one of the 28 names); {} resets to the "
                                "server's templates"}
    paths = {
        "/api/modules": {"get": _op("the enabled modules, in the order given; `server` and `version` identify "
                                    "this server (SillyTavern-Extras answers `modules` only)", _json(
            _obj({"modules": {"type": "array", "items": {"type": "string"}},
                  "server": {"type": "string", "enum": ["talkinghead-extras"]}, "version": {"type": "string"}},
                 ("modules", "server", "version"))), tag="server")},
        "/api/openapi.json": {"get": _op("this document (the routes of the enabled modules)",
                                         _json({"type": "object"}), tag="server")},
        "/api/classify": {"post": _op(
            "classify a text: all 28 labels, highest score first; with talkinghead on, the top label becomes "
            "the avatar's emotion",
            {**_json(_obj({"classification": {"type": "array", "items": _obj(
                {"label": {"type": "string"}, "score": {"type": "number"}}, ("label", "score"))}},
                ("classification",))), **_errors(400, 413, 415)},
            tag="classify", requestBody=_json_body(_obj({"text": {"type": "string"}}, ("text",))))},
        "/api/classify/labels": {"get": _op(
            'the labels; "talkinghead" appended when that module is on',
            _json(_obj({"labels": {"type": "array", "items": {"type": "string"}}}, ("labels",))), tag="classify")},
        "/api/talkinghead/load": {"post": _op(
            "a new character: an RGBA image, scaled down to fit 512x512 and centred; a bad one is a 400 and "
            "the current character stays", {**_text("OK"), **_errors(400, 413)}, tag=th,
            requestBody={"required": True, "content": {"multipart/form-data": {"schema": _obj(
                {"file": {"type": "string", "format": "binary"}}, ("file",), additional=True)}}})},
        "/api/talkinghead/unload": {"get": _op("pause the animation (character, emotion and settings kept)",
                                               _text("animation paused"), tag=th)},
        "/api/talkinghead/start_talking": {"get": _op("the mouth moves as in speech", _text("talking started"),
                                                      tag=th)},
        "/api/talkinghead/stop_talking": {"get": _op("the mouth rests", _text("talking stopped"), tag=th)},
        "/api/talkinghead/lipsync": {"post": _op(
            "speech audio (WAV, MP3, OGG, Opus, FLAC, AAC/M4A, WebM; up to 10 minutes) drives the mouth; answers "
            "the analysis. Options as query parameters, or as form fields of a multipart upload",
            {**_json(_obj({"duration_s": {"type": "number"}, "frame_ms": {"type": "integer"},
                           "voiced_ratio": {"type": "number"}, "track": _TRACK},
                          ("duration_s", "frame_ms", "voiced_ratio"))), **_errors(400, 413)},
            tag=th,
            parameters=[{"name": k, "in": "query", "required": False, "schema": v}
                        for k, v in _LIPSYNC_OPTIONS.items()],
            requestBody={"required": True, "content": {
                "multipart/form-data": {"schema": _obj({"file": {"type": "string", "format": "binary"},
                                                        **_LIPSYNC_OPTIONS}, ("file",))},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "audio/*": {"schema": {"type": "string", "format": "binary"}}}})},
        "/api/talkinghead/set_emotion": {"post": _op(
            "the emotion to show; an unknown name falls back to neutral", {**_text("emotion set to joy"),
                                                                           **_errors(400, 413, 415)},
            tag=th, requestBody=_json_body(_obj({"emotion_name": {"type": "string"}}, ("emotion_name",),
                                                additional=True)))},
        "/api/talkinghead/load_emotion_templates": {"post": _op(
            "the client's emotion templates; {} resets to the server's", {**_text("OK"), **_errors(400, 413, 415)},
            tag=th, requestBody=_json_body(templates))},
        "/api/talkinghead/load_animator_settings": {"post": _op(
            "animator settings; {} resets to the defaults; an unknown key or a value out of range is a 400",
            {**_text("OK"), **_errors(400, 413, 415)}, tag=th, requestBody=_json_body(_settings_schema()))},
        "/api/talkinghead/result_feed": {"get": _op(
            "the endless stream of frames: multipart/x-mixed-replace; boundary=frame, one PNG (RGBA) or JPEG per "
            "part, each new frame once, the last one again about once a second; no key needed",
            {"200": {"description": "the stream", "content": {"multipart/x-mixed-replace": {
                "schema": {"type": "string", "format": "binary"}}}}, **_errors(400, 503)},
            tag=th, secured=False, parameters=[
                {"name": "format", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": ["png", "jpeg", "jpg"], "default": "png"}},
                {"name": "bg", "in": "query", "required": False,
                 "schema": {"type": "string", "pattern": "^#?[0-9a-fA-F]{6}$", "default": "ffffff"},
                 "description": "JPEG only: the background colour RRGGBB"}])},
        "/api/talkinghead/render": {"post": _op(
            "one exact still (PNG) of the current character in a pose and/or an emotion's pose (the pose's "
            "morphs over the emotion's)",
            {"200": {"description": "the still", "content": {"image/png": {
                "schema": {"type": "string", "format": "binary"}}}}, **_errors(400, 413, 415)},
            tag=th, requestBody=_json_body({**_obj({"pose": _pose_schema(), "emotion": _EMOTION}),
                                            "minProperties": 1}))},
        "/api/talkinghead/emotions": {"get": _op("the current emotion templates {emotion: {morph: value}}",
                                                 _json({"type": "object"}), tag=th)},
        "/api/talkinghead/stats": {"get": _op(
            "what the renderer is doing: frames, render_fps, state (running / idle / paused), viewers, ...",
            _json({"type": "object", "properties": {
                "render_fps": {"type": "number"}, "frames_rendered": {"type": "integer"},
                "state": {"type": "string", "enum": ["running", "idle", "paused"]},
                "viewers": {"type": "integer"}, "last_error": {"type": "string", "nullable": True}}}), tag=th)},
        "/api/talkinghead/mocap": {
            "get": _op("the puppeteer: capture source, packets/s, last packet age, dropped packets, mapped values",
                       _json(_MOCAP_STATE), tag=th),
            "post": _op("switch face capture on or off, calibrate (the resting face), set per-parameter gains; "
                        "each avatar has its own capture, on its own UDP port",
                        {**_json(_MOCAP_STATE), **_errors(400, 409, 413, 415, why=_MOCAP_WHY)}, tag=th,
                        requestBody=_json_body(_obj({
                            "source": {"type": "string", "enum": ["ifacialmocap", "vmc"]},
                            "on": {"type": "boolean"}, "port": {"type": "integer", "minimum": 0, "maximum": 65535},
                            "phone": {"type": "string"}, "calibrate": {"type": "boolean"},
                            "gain": {"type": "object", "additionalProperties": {"type": "number"}}})))},
        "/talkinghead/poser": {"get": _op("the manual poser page (no key needed)", _page(), tag="poser",
                                          secured=False)},
        "/talkinghead/poser/": {"get": _op("the manual poser page (no key needed)", _page(), tag="poser",
                                           secured=False)},
        "/talkinghead/poser/{filename}": {"get": _op(
            "the page's assets (no key needed)", {"200": {"description": "the file"}, **_errors(404)},
            tag="poser", secured=False,
            parameters=[{"name": "filename", "in": "path", "required": True, "schema": {"type": "string"}}])},
        "/api/talkinghead/pose_params": {"get": _op(
            "the 45 pose parameters: names, ranges, sections, left/right pairs", _json(_obj(
                {"params": {"type": "array"}, "sections": {"type": "array"}}, ("params", "sections"))),
            tag="poser")},
        "/api/talkinghead/templates": {"get": _op(
            "the built-in, server (built-in + saved) and current templates, and which are saved",
            _json(_obj({"builtin": {"type": "object"}, "server": {"type": "object"}, "current": {"type": "object"},
                        "saved": {"type": "array", "items": {"type": "string"}},
                        "persistent": {"type": "boolean"}}, ("builtin", "server", "current", "saved"))),
            tag="poser")},
        "/api/talkinghead/templates/{name}": {
            "put": _op("save an emotion's template on the server (kept across restarts in --user-data)",
                       {**_json(_TEMPLATE_ANSWER), **_errors(400, 404, 413, 415, 500)}, tag="poser",
                       parameters=[_TEMPLATE_NAME],
                       requestBody=_json_body(_obj({"pose": _pose_schema()}, ("pose",)))),
            "delete": _op("back to the built-in template", {**_json(_TEMPLATE_ANSWER), **_errors(400, 404, 500)},
                          tag="poser", parameters=[_TEMPLATE_NAME])},
        "/api/talkinghead/sprites.zip": {"get": _op(
            "the 28 emotions as exact renders, <emotion>.png each, as SillyTavern names expression sprites",
            {"200": {"description": "a zip file (streamed)", "content": {"application/zip": {
                "schema": {"type": "string", "format": "binary"}}}}}, tag="poser")},
    }
    paths.update(_avatar_paths(paths))
    return {
        "openapi": "3.0.3",
        "info": {"title": "talkinghead-extras", "version": VERSION,
                 "description": "A living anime avatar (THA3) and an emotion classifier for SillyTavern; "
                                "the prose, with the client's expectations: docs/api.md.",
                 "license": {"name": "MIT"}},
        "servers": [{"url": "http://localhost:5100"}],
        "security": [{"apiKey": []}],
        "paths": paths,
        "components": {
            "schemas": {"Error": _obj({"error": {"type": "string", "example": "400: ..."}}, ("error",))},
            "securitySchemes": {"apiKey": {
                "type": "http", "scheme": "bearer",
                "description": "only with --secure: the key in api_key.txt (Authorization: Bearer <key>)"}},
        },
    }


def _page() -> dict:
    return {"200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}}
