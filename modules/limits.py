"""Request body limits, and JSON for the errors waitress answers itself.

`--max-content-length` (MB, default 32) caps every request body: waitress refuses a larger one from its
Content-Length (or, chunked, as soon as it is passed) without reading the rest, so a 50 MB upload costs the
server nothing. 32 MB is what `/lipsync` needs for 10 minutes of 24 kHz 16-bit mono WAV (~29 MB; compressed
formats are far smaller). Every other route takes images or JSON and at most SMALL_BODY_MB (or the flag, if
lower): a 512x512 RGBA PNG is under 1.1 MB. Over either limit: 413 JSON with CORS headers, like every error.
"""
from __future__ import annotations

import json

from flask import jsonify, request
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask

DEFAULT_MB = 32.0
SMALL_BODY_MB = 8.0
LARGE_BODY_ENDPOINTS = {"talkinghead.lipsync", "talkinghead_avatar.lipsync"}  # Flask endpoints that take the full limit


def _mb(n: int) -> str:
    return f"{n / 2**20:g} MB"


def install(app, max_mb: float) -> None:
    """Per-route limits in the Flask app (the test client and any WSGI server see them)."""
    full = int(max_mb * 2**20)
    small = min(full, int(SMALL_BODY_MB * 2**20))
    app.config["MAX_CONTENT_LENGTH"] = full

    @app.before_request
    def _route_limit():
        if request.endpoint not in LARGE_BODY_ENDPOINTS:
            request.max_content_length = small

    @app.errorhandler(413)
    def _too_large(e):
        limit = request.max_content_length or full
        size = f" ({_mb(request.content_length)})" if request.content_length else ""
        return jsonify(error=f"413: the request body{size} is over the {_mb(limit)} this route takes "
                             f"(images and JSON: {_mb(small)}; /api/talkinghead/lipsync audio: {_mb(full)}; "
                             "the server's --max-content-length)"), 413


def waitress_options(max_bytes: int | None) -> dict:
    """waitress refuses bodies over the app's limit before reading them (its test is `length >= max`)."""
    return {"max_request_body_size": max_bytes + 1} if max_bytes else {}


def json_errors(server) -> None:
    """Make the errors waitress answers without the app (body too large, unparsable request) JSON with CORS
    headers too, so a browser client can read them."""
    server.channel_class = JsonErrorChannel


class JsonErrorTask(ErrorTask):
    def execute(self):
        e = self.request.error
        if e.code == 413:
            length = self.request.content_length
            size = f" ({_mb(length)})" if length else ""
            limit = self.channel.server.adj.max_request_body_size - 1
            message = (f"413: the request body{size} is over the {_mb(limit)} this server takes "
                       f"(--max-content-length); {'it' if length else 'the rest'} was not read")
        else:
            message = f"{e.code}: {e.reason}: {e.body}"
        body = json.dumps({"error": message}).encode()
        origin = self.request.headers.get("ORIGIN")
        self.status = f"{e.code} {e.reason}"
        self.response_headers.extend([("Content-Type", "application/json"),
                                      ("Access-Control-Allow-Origin", origin or "*"), ("Vary", "Origin")])
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    error_task_class = JsonErrorTask
