"""talkinghead-extras server: command line → Config → create_app(config) → waitress (result_feed's sockets
handed to one writer thread: modules/stream_server.py).

    python server.py --enable-modules=classify,talkinghead [--talkinghead-gpu] [--port 5100] [--listen] [--secure]
"""
from __future__ import annotations

import argparse
import logging
import socket
import sys
from pathlib import Path

from flask import Flask, jsonify, request
from flask_cors import CORS
from werkzeug.exceptions import HTTPException

import modules
from modules import limits, openapi, security, stream_server
from modules.errors import ApiError

log = logging.getLogger("talkinghead-extras")

# How much a response may have queued for a slow client before the thread writing it waits: waitress's own
# queue (default 16 MB, spilled to a temporary file past 1 MB; result_feed's writer skips frames past the
# same mark, stream_server.OUTBUF_HIGH) and the kernel's send buffer (autotuned to several MB on loopback). A
# result_feed viewer that cannot keep up then waits a few frames behind and is sent the latest frame next,
# skipping the rest: a viewer reading 5 of 25 frames/s was sent frames 16 behind the renderer instead of 43
# (and growing) with the defaults (tests/test_stream_delivery.py).
WAITRESS_QUEUE = {"outbuf_high_watermark": stream_server.OUTBUF_HIGH, "outbuf_overflow": 4 << 20}
SOCKET_SEND_BUFFER = 1 << 18  # 256 KB: 25 MB/s at a 10 ms round trip, 8x a PNG stream's rate


def make_server(app, **options):
    """The waitress server for the app (not yet running: `.run()`), with the queues above; result_feed's
    sockets go to `server.stream_writer` (one thread for every viewer), so viewers hold no request thread."""
    import waitress  # a production WSGI server: threaded request handling, refuses big bodies unread

    body_limit = limits.waitress_options(app.config["MAX_CONTENT_LENGTH"])  # bigger bodies: 413, unread
    server = waitress.create_server(app, **WAITRESS_QUEUE, **body_limit, **options)
    limits.json_errors(server)
    server.stream_writer = stream_server.serve_streams(server)
    server.adj.socket_options = [*server.adj.socket_options,
                                 (socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SEND_BUFFER)]
    return server


class Config:
    """The server's settings: its own (the arguments below) and one section per module (`config.talkinghead`,
    `config.classify`: each module's config.py declares the section and its flags). A section's fields can also
    be given and read by their flags' names, as one flat list: `Config(classify_device="cuda")`,
    `config.talkinghead_gpu`."""

    def __init__(self, modules: list[str] | None = None, *, port: int = 5100, listen: bool = False,
                 secure: bool = False, max_content_length_mb: float = limits.DEFAULT_MB, api_key: str | None = None,
                 testing: bool = False, sections: dict | None = None, **flat):
        self.modules = list(modules or [])
        self.port = port
        self.listen = listen
        self.secure = secure
        self.max_content_length_mb = max_content_length_mb
        self.api_key = api_key  # set when secure; filled by main() from api_key.txt
        self.testing = testing
        self.sections = _default_sections()
        self.sections.update(sections or {})
        for name, value in flat.items():
            section, field_name = _flat_name(name)
            setattr(self.sections[section], field_name, value)

    def __getattr__(self, name: str):
        sections = self.__dict__.get("sections", {})
        if name in sections:
            return sections[name]
        try:
            section, field_name = _flat_name(name)
        except TypeError:
            raise AttributeError(name) from None
        return getattr(sections[section], field_name)


def _default_sections() -> dict:
    return {name: config.Config() for name, config in modules.config_modules().items()}


def _flat_name(name: str) -> tuple[str, str]:
    """(section, field) of a flag's name (`user_data` → ("talkinghead", "user_data"))."""
    for section, config in modules.config_modules().items():
        if name in config.FLAT:
            return section, config.FLAT[name]
    raise TypeError(f"Config has no setting {name!r}")


def parse_args(argv: list[str] | None = None) -> Config:
    """The server's flags, and each module's (modules/<name>/config.py), whether it is enabled or not."""
    p = argparse.ArgumentParser(description="talkinghead-extras: a living anime avatar and emotion "
                                            "classifier for SillyTavern")
    p.add_argument("--enable-modules", default="", help="comma-separated modules: "
                   + ", ".join(modules.KNOWN))
    p.add_argument("--port", type=int, default=5100, help="port to listen on (default 5100)")
    p.add_argument("--listen", action="store_true", help="listen on all interfaces (default: localhost only)")
    p.add_argument("--secure", action="store_true", help="require an API key (api_key.txt) on every request")
    p.add_argument("--max-content-length", type=float, default=limits.DEFAULT_MB, metavar="MB",
                   help=f"largest request body in MB, refused unread beyond (default {limits.DEFAULT_MB:g}: "
                        f"10 minutes of WAV for /lipsync); images and JSON: at most {limits.SMALL_BODY_MB:g}")
    configs = modules.config_modules()
    for config in configs.values():
        config.add_arguments(p)
    a = p.parse_args(argv)
    names = [n.strip().strip("'\"") for n in a.enable_modules.strip("'\"").split(",") if n.strip().strip("'\"")]
    try:
        modules.validate(names)
        if a.max_content_length <= 0:
            raise modules.FlagError("--max-content-length must be a positive number of MB")
        sections = {name: config.from_args(a) for name, config in configs.items()}
    except (modules.UnknownModuleError, modules.FlagError) as e:
        p.exit(2, f"error: {e}\n")
    return Config(names, port=a.port, listen=a.listen, secure=a.secure, max_content_length_mb=a.max_content_length,
                  sections=sections)


def create_app(config: Config, engines: dict | None = None) -> Flask:
    """Build the app. `engines` (name → engine) lets tests share one loaded engine across apps."""
    app = Flask(__name__, static_folder=None)  # no /static route: every route is one of ours
    app.extensions.update(engines or {})
    limits.install(app, config.max_content_length_mb)
    app.config["TH_CONFIG"] = config
    # Registered before CORS so it runs after it (after_request runs in reverse): only fills in the
    # wildcard when flask-cors added nothing (a request without Origin).
    @app.after_request
    def _wildcard_without_origin(response):
        response.headers.setdefault("Access-Control-Allow-Origin", "*")
        return response

    # Echo the Origin (with Vary: Origin), allow any method and any requested header; also on errors.
    CORS(app, origins=[r".*"], allow_headers="*", vary_header=True,
         methods=["GET", "HEAD", "POST", "OPTIONS", "PUT", "PATCH", "DELETE"])

    if config.secure:
        security.require_api_key(app, config.api_key)

    @app.errorhandler(ApiError)
    def _api_error(e: ApiError):
        return jsonify(error=e.message), e.status

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException):
        disabled = modules.disabled_module_for(request.path, config.modules)
        if e.code == 404 and disabled:
            return jsonify(error=f"403: module {disabled!r} is not enabled; start the server with "
                                 f"--enable-modules={','.join([*config.modules, disabled])}"), 403
        return jsonify(error=f"{e.code}: {e.description}"), e.code

    @app.errorhandler(Exception)
    def _unexpected(e: Exception):
        log.exception("unhandled error")
        return jsonify(error="500: internal server error (see the server log)"), 500

    @app.get("/api/modules")
    def _modules():
        # `server` and `version` tell clients this is talkinghead-extras (port 5100 is also the default of
        # SillyTavern-Extras and raven-server); `modules` is SillyTavern-Extras' own field, unchanged.
        return jsonify(modules=config.modules, server="talkinghead-extras", version=openapi.VERSION)

    app.register_blueprint(openapi.blueprint)  # GET /api/openapi.json

    modules.setup_all(app, config)
    return app


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = parse_args(argv)
    host = "0.0.0.0" if config.listen else "127.0.0.1"
    warning = security.exposure_warning(config.listen, config.secure, config.port)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    try:  # what can fail before the (slow) engines load: say it in one line, at once
        if config.secure:
            config.api_key = security.load_or_create_key(Path("api_key.txt"))
        _check_port_free(host, config.port)
        modules.check_all(config)
        app = create_app(config)
    except modules.SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a file or folder the engines read or write (e.g. the backend cache in data/)
        where = f" {e.filename}" if e.filename else ""
        print(f"error: cannot use{where} ({e.strerror or e}); the server reads the weights from and writes its "
              "cache to the data folder (data/, or TALKINGHEAD_DATA_DIR): make it writable", file=sys.stderr)
        return 1
    try:
        # API calls only (viewers hold no thread): room for a few slow ones (lipsync, load) beside quick ones.
        server = make_server(app, host=host, port=config.port, threads=16, channel_timeout=30,
                             ident="talkinghead-extras")
    except OSError as e:  # the port taken since the check
        print(f"error: cannot listen on {host}:{config.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    log.info("serving modules %s on http://%s:%d", ", ".join(config.modules) or "(none)", host, config.port)
    server.run()  # until Ctrl-C (SIGINT)
    server.stream_writer.close()  # end the viewers' streams
    return 0


def _check_port_free(host: str, port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as waitress: a closed server's port is free
        try:
            s.bind((host, port))
        except OSError as e:
            raise modules.SetupError(f"cannot listen on {host}:{port}: {e.strerror or e} (is another server "
                                     "running on that port? stop it, or choose another with --port)") from None


if __name__ == "__main__":
    sys.exit(main())
