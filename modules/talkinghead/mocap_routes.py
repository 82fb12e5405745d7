"""HTTP for the puppeteer (talkinghead.mocap): GET the capture's state, POST to switch a source on or off,
calibrate, or set gains. The Puppeteer lives in app.extensions["talkinghead_mocap"]; the engine asks it for
the pose override (TalkingHead.set_pose_override)."""
from __future__ import annotations

import atexit

from flask import Blueprint, current_app, jsonify, request

from modules import SetupError
from modules.errors import bad_request, json_body
from talkinghead.mocap import SOURCES, MocapError, Puppeteer, parse_spec

blueprint = Blueprint("talkinghead_mocap", __name__, url_prefix="/api/talkinghead")
_KEYS = {"source", "on", "port", "phone", "calibrate", "gain"}


def puppeteer() -> Puppeteer:
    return current_app.extensions["talkinghead_mocap"]


@blueprint.get("/mocap")
def mocap_status():
    return jsonify(puppeteer().status())


@blueprint.post("/mocap")
def mocap_control():
    """{"source": "ifacialmocap"|"vmc", "on": bool, "port": int, "phone": IP, "calibrate": bool,
    "gain": {pose name: number}} — each key optional; answers the state, as GET."""
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
    except MocapError as e:
        raise bad_request(str(e)) from None
    return jsonify(p.status())


def setup(app, config) -> None:
    """The puppeteer for this app's engine, started from --talkinghead-mocap if given."""
    p = Puppeteer(listen=config.listen)
    app.extensions["talkinghead"].set_pose_override(p)
    app.extensions["talkinghead_mocap"] = p
    spec = config.talkinghead.mocap
    if spec:
        try:
            source, options = parse_spec(spec)
            p.start(source, **options)
        except MocapError as e:
            raise SetupError(f"--talkinghead-mocap: {e}") from None
        atexit.register(p.close)
    app.register_blueprint(blueprint)
