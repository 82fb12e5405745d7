"""`--secure`: API-key auth with `Authorization: Bearer <key>`, compared in constant time.

OPTIONS preflights need no key, and the result feed is exempt because a browser `<img>` cannot send headers
(so is the manual poser's static page).
"""
from __future__ import annotations

import hmac
import logging
import re
import secrets
from pathlib import Path

from flask import jsonify, request

log = logging.getLogger(__name__)
EXEMPT_PATHS = {"/api/talkinghead/result_feed"}
EXEMPT_AVATAR_FEED = re.compile(r"/api/talkinghead/avatars/[^/]+/result_feed")  # each avatar's, likewise
# The manual poser's page and its assets hold no data (the page sends the key on its API calls), and a
# browser opens them by address, without headers.
EXEMPT_PAGE = "/talkinghead/poser"


def is_exempt(path: str) -> bool:
    return (path in EXEMPT_PATHS or EXEMPT_AVATAR_FEED.fullmatch(path) is not None or path == EXEMPT_PAGE
            or path.startswith(EXEMPT_PAGE + "/"))


def exposure_warning(listen: bool, secure: bool, port: int) -> str | None:
    """`--listen` without `--secure`: say who can reach the server, and how to close it."""
    if not listen or secure:
        return None
    return (f"warning: --listen without --secure: anyone who can reach this computer on port {port} (everyone "
            "on your network, e.g. the same Wi-Fi, and the whole internet if the port is forwarded) can use "
            "this server without a key: change the character, read the stream. Add --secure to require the key "
            "in api_key.txt, or drop --listen to serve this computer only.")


def load_or_create_key(path: Path) -> str:
    """The key in `path`, or a new one written there. SetupError (one line) when it can be neither."""
    from modules import SetupError

    try:
        if path.is_file() and path.read_text().strip():
            key = path.read_text().strip()
            log.info("API key read from %s", path.resolve())
        else:
            key = secrets.token_hex(16)
            path.write_text(key + "\n")
            log.info("API key generated and written to %s", path.resolve())
    except OSError as e:
        raise SetupError(f"--secure: cannot {'read' if path.is_file() else 'write'} the API key file "
                         f"{path.resolve()} ({e.strerror or e}); start the server in a writable folder") from None
    print(f"API key: {key}", flush=True)
    return key


def require_api_key(app, key: str | None) -> None:
    if not key:
        raise ValueError("--secure needs an API key")
    expected = f"Bearer {key}".encode()

    @app.before_request
    def _check_key():
        if request.method == "OPTIONS" or is_exempt(request.path):
            return None
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return jsonify(error="401: Invalid API key"), 401
        return None
