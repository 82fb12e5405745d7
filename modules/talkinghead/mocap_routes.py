"""HTTP for face capture (talkinghead.mocap): GET an avatar's capture state, POST to switch its source on or
off, calibrate, or set gains. Each avatar has its own Puppeteer on its own UDP port (Avatars.capture: made on
its first POST, set as that avatar's pose override; a GET before that answers an idle capture's state and
makes none). The routes are per avatar (routes.per_avatar): /api/talkinghead/mocap for the default avatar,
/api/talkinghead/avatars/<id>/mocap for each. Holds no state: the puppeteers are the Avatars'
(app.extensions["talkinghead_avatars"])."""
from __future__ import annotations

from flask import current_app, jsonify, request

from modules import SetupError
from modules.errors import ApiError, bad_request, json_body
from modules.talkinghead.routes import avatar_id, per_avatar
from talkinghead.avatars import DEFAULT, UnknownAvatar
from talkinghead.mocap import SOURCES, MocapError, PortTaken, Puppeteer, parse_spec

_KEYS = {"source", "on", "port", "phone", "calibrate", "gain"}


def puppeteer() -> Puppeteer:
    """The capture of the avatar the request is for."""
    try:
        return current_app.extensions["talkinghead_avatars"].capture(avatar_id())
    except UnknownAvatar as e:  # deleted since its path was looked up
        raise ApiError(404, str(e)) from None


@per_avatar("/mocap")
def mocap_status():
    try:
        return jsonify(current_app.extensions["talkinghead_avatars"].capture_status(avatar_id()))
    except UnknownAvatar as e:  # deleted since its path was looked up
        raise ApiError(404, str(e)) from None


@per_avatar("/mocap", methods=("POST",))
def mocap_control():
    """{"source": "ifacialmocap"|"vmc", "on": bool, "port": int, "phone": IP, "calibrate": bool,
    "gain": {pose name: number}} — each key optional; answers the state, as GET. A port another avatar's
    capture listens on: 409 (both keep running as they were); any other port that cannot be bound: 400."""
    body = json_body(request)
    unknown = set(body) - _KEYS
    if unknown:
        raise bad_request(f"unknown keys {', '.join(sorted(map(str, unknown)))}; known: {', '.join(sorted(_KEYS))}")
    for key, kind in (("on", bool), ("calibrate", bool), ("gain", dict), ("source", str), ("phone", str)):
        if key in body and not isinstance(body[key], kind):
            raise bad_request(f"{key!r} must be a {'boolean' if kind is bool else kind.__name__}")
    if "port" in body and (isinstance(body["port"], bool) or not isinstance(body["port"], int)):
        raise bad_request("'port' must be an integer")
    if "source" in body and body["source"] not in SOURCES:
        raise bad_request(f"unknown source {body['source'][:40]!r}; known: {', '.join(SOURCES)}")
    p = puppeteer()
    try:
        if body.get("on") is False:
            p.stop()
        elif body.get("on") is True or "source" in body:
            source = body.get("source") or p.status()["source"]
            if source is None:
                raise bad_request("say which source to turn on: \"source\": \"ifacialmocap\" or \"vmc\"")
            p.start(source, port=body.get("port"), phone=body.get("phone"))
        if "gain" in body:
            p.set_gains(body["gain"])
        if "calibrate" in body:
            p.calibrate(body["calibrate"])
    except PortTaken as e:
        raise ApiError(409, str(e)) from None
    except MocapError as e:
        raise bad_request(str(e)) from None
    return jsonify(p.status())


def setup(app, config) -> None:
    """The default avatar's capture started from --talkinghead-mocap, if given (the routes are routes.py's
    blueprints, registered by the package's setup)."""
    spec = config.talkinghead.mocap
    if spec:
        try:
            source, options = parse_spec(spec)
            app.extensions["talkinghead_avatars"].capture(DEFAULT).start(source, **options)
        except MocapError as e:
            raise SetupError(f"--talkinghead-mocap: {e}") from None
