"""HTTP for the talkinghead engine: parse, validate, call the engine, shape the answer (api.md).

Each route of one avatar (`per_avatar`) is served twice by the same view: at /api/talkinghead/<route> for the
default avatar (the SillyTavern-Extras routes, unchanged) and at /api/talkinghead/avatars/<id>/<route> for the
avatar `id` (avatar_routes.py makes and deletes them).
"""
from __future__ import annotations

import math

from flask import Blueprint, Response, current_app, g, jsonify, request

from modules import viewers
from modules.errors import ApiError, bad_request, json_body
from talkinghead import avatars as avatars_mod, encode, lipsync as lipsync_mod, pose as pose_mod, stream
from talkinghead.emotions import TemplateError
from talkinghead.image import ImageError
from talkinghead.settings import SettingsError

blueprint = Blueprint("talkinghead", __name__, url_prefix="/api/talkinghead")
VIEWER_CAP = "talkinghead.viewer_cap"  # app.extensions key: the server's modules.viewers.ViewerCap
avatar_blueprint = Blueprint("talkinghead_avatar", __name__, url_prefix="/api/talkinghead/avatars/<id>")
PER_AVATAR: list[str] = []  # the rules served for every avatar (modules/openapi.py describes each twice)


@avatar_blueprint.url_value_preprocessor
def _avatar_id(endpoint, values) -> None:
    g.avatar_id = values.pop("id")


@avatar_blueprint.before_request
def _avatar() -> None:
    """The avatar the path names, or 404 before anything else is looked at (the app's own before_request, the
    API key check among them, came first)."""
    try:
        g.avatar = current_app.extensions["talkinghead_avatars"].get(g.avatar_id)
    except avatars_mod.UnknownAvatar as e:
        raise ApiError(404, str(e)) from None


def per_avatar(rule: str, methods: tuple[str, ...] = ("GET",)):
    """Register a view for the default avatar and, under /avatars/<id>, for each avatar (here and in
    mocap_routes.py)."""
    def register(view):
        blueprint.add_url_rule(rule, view_func=view, methods=methods)
        avatar_blueprint.add_url_rule(rule, view_func=view, methods=methods)
        if rule not in PER_AVATAR:  # a rule with a view per method comes once
            PER_AVATAR.append(rule)
        return view
    return register


def engine():
    """The avatar the request is for: the one its path names, else the default one."""
    return g.get("avatar") or current_app.extensions["talkinghead"]


def avatar_id() -> str:
    """The id of the avatar the request is for (engine())."""
    return g.get("avatar_id", avatars_mod.DEFAULT)


def text(body: str) -> Response:
    return Response(body, mimetype="text/plain")


@per_avatar("/load", methods=("POST",))
def load():
    upload = request.files.get("file")
    if upload is None:
        fields = ", ".join(request.files) or "none"
        raise bad_request(f"send the image as multipart form field 'file' (got fields: {fields})")
    try:
        engine().load(upload.read())
    except ImageError as e:
        raise bad_request(f"{e}; the current character is kept") from None
    return text("OK")


@per_avatar("/unload")
def unload():
    engine().unload()
    return text("animation paused")


@per_avatar("/start_talking")
def start_talking():
    engine().start_talking()
    return text("talking started")


@per_avatar("/stop_talking")
def stop_talking():
    engine().stop_talking()
    return text("talking stopped")


MIN_RATE, MAX_RATE = 0.25, 4.0  # playback rates a client may ask for (browsers play 0.0625-16; TTS UIs ~0.5-3)


@per_avatar("/lipsync", methods=("POST",))
def lipsync():
    """Speech audio (multipart field `file`, or the raw body) → the mouth follows it; answers the analysis."""
    options = {**request.args, **request.form} if request.mimetype == "multipart/form-data" else request.args
    start = options.get("start", "now")
    if start not in ("now", "next_talking"):
        raise bad_request(f"start must be 'now' or 'next_talking', got {start!r}")
    offset_ms = _number(options, "offset_ms", 0.0)
    if not 0.0 <= offset_ms <= lipsync_mod.MAX_DURATION_S * 1000:
        raise bad_request(f"offset_ms must be between 0 and {lipsync_mod.MAX_DURATION_S * 1000:.0f}, got {offset_ms:g}")
    rate = _number(options, "rate", 1.0)  # the client's playback rate (an audio element's playbackRate)
    if not MIN_RATE <= rate <= MAX_RATE:
        raise bad_request(f"rate must be between {MIN_RATE:g} and {MAX_RATE:g} (the playback speed), got {rate:g}")
    analyze_only, with_track = _flag(options, "analyze_only"), _flag(options, "track")
    audio = _audio_from(request)
    try:
        track = engine().lipsync(audio, start=start, offset_s=offset_ms / 1000, drive=not analyze_only,
                                 rate=rate)
    except lipsync_mod.AudioError as e:
        raise bad_request(f"{str(e).rstrip('.')}; the animation is unchanged") from None
    return jsonify(track.to_json(with_track=with_track or analyze_only))


def _audio_from(req) -> bytes:
    if req.mimetype == "multipart/form-data":
        upload = req.files.get("file")
        if upload is None:
            fields = ", ".join(req.files) or "none"
            raise bad_request(f"send the audio as multipart form field 'file' (got fields: {fields})")
        return upload.read()
    data = req.get_data(cache=False)
    if not data:
        raise bad_request("no audio: send it as the request body or as multipart form field 'file'")
    return data


def _number(options, name: str, default: float) -> float:
    raw = options.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise bad_request(f"{name} must be a number, got {raw!r}")
    return value


def _flag(options, name: str) -> bool:
    raw = str(options.get(name, "0")).lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off", ""):
        return False
    raise bad_request(f"{name} must be 1 or 0, got {raw!r}")


@per_avatar("/set_emotion", methods=("POST",))
def set_emotion():
    name = json_body(request).get("emotion_name")
    if not isinstance(name, str):
        raise bad_request('send {"emotion_name": "<emotion>"} with a string name')
    return text(f"emotion set to {engine().set_emotion(name)}")


@per_avatar("/load_emotion_templates", methods=("POST",))
def load_emotion_templates():
    try:
        engine().load_emotion_templates(json_body(request))
    except TemplateError as e:
        raise bad_request(f"{e}; the previous templates are kept") from None
    return text("OK")


@per_avatar("/load_animator_settings", methods=("POST",))
def load_animator_settings():
    try:
        engine().load_animator_settings(json_body(request))
    except SettingsError as e:
        raise bad_request(f"{e}; the previous settings are kept") from None
    return text("OK")


@per_avatar("/result_feed")
def result_feed():
    return stream_response(engine())


def stream_response(source) -> Response:
    """A result_feed answer for one stream `source` (anything with a FrameSlot `slot` and stream.Viewers
    `viewers`: the engine, or one avatar), as the query asks: PNG, or JPEG over `bg`. Past the server's viewer
    cap: 503. Served by server.py, the stream's socket leaves the request thread (modules/stream_server.py)."""
    fmt = request.args.get("format", "png").lower()
    if fmt not in ("png", "jpeg", "jpg"):
        raise bad_request(f"format must be png or jpeg, got {fmt!r}")
    background = None
    if fmt != "png":
        try:
            background = encode.parse_background(request.args.get("bg"))
        except ValueError as e:
            raise bad_request(str(e)) from None
    body = viewers.StreamBody(source, background, current_app.extensions[VIEWER_CAP], request.environ)
    response = Response(body, mimetype=stream.MIMETYPE, direct_passthrough=True)
    response.headers["Cache-Control"] = "no-cache, no-store, must-revalidate"
    response.headers["X-Accel-Buffering"] = "no"
    return response


@per_avatar("/render", methods=("POST",))
def render():
    body = json_body(request)
    unknown = set(body) - {"pose", "emotion"}
    if unknown or not body:
        raise bad_request('send {"pose": {morph: value, ...}} and/or {"emotion": name}'
                          + (f"; unknown keys: {', '.join(sorted(unknown))}" if unknown else ""))
    values = pose_mod.zeros()
    if "emotion" in body:
        name = body["emotion"]
        try:
            values = engine().emotion_pose(name)
        except (KeyError, TypeError):
            raise bad_request(f"unknown emotion {name!r}; see GET /api/talkinghead/emotions") from None
    if "pose" in body:
        if not isinstance(body["pose"], dict):
            raise bad_request('"pose" must be an object {morph: value, ...}')
        try:
            given = pose_mod.from_dict(body["pose"])
        except pose_mod.PoseError as e:
            raise bad_request(str(e)) from None
        for name in body["pose"]:
            values[pose_mod.INDEX[name]] = given[pose_mod.INDEX[name]]
    return Response(engine().render_still(values), mimetype="image/png")


@per_avatar("/emotions")
def emotions():
    return jsonify(engine().emotions())


@per_avatar("/stats")
def stats():
    return jsonify(engine().stats())
