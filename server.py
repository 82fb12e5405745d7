"""talkinghead-extras server: command line → Config → create_app(config) → waitress (result_feed's sockets
handed to one writer thread: modules/stream_server.py).

    python server.py --enable-modules=classify,talkinghead [--talkinghead-gpu] [--port 5100] [--listen] [--secure]
"""
from __future__ import annotations

import argparse
import logging
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask, jsonify, request
from flask_cors import CORS
from werkzeug.exceptions import HTTPException

import modules
from modules import limits, openapi, security, stream_server, viewers
from modules.errors import ApiError
from talkinghead import weights

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


@dataclass
class Config:
    modules: list[str] = field(default_factory=list)
    port: int = 5100
    listen: bool = False
    secure: bool = False
    max_content_length_mb: float = limits.DEFAULT_MB
    classify_device: str = "cpu"
    classification_model: str | None = None
    talkinghead_gpu: bool = False
    talkinghead_model: str = "auto"
    talkinghead_models: str | None = None
    talkinghead_backend: str = "auto"
    talkinghead_idle_seconds: float = 5.0  # no viewer for this long: rendering stops (0: never)
    talkinghead_max_viewers: int = viewers.DEFAULT_MAX_VIEWERS  # result_feed viewers at once; the next: 503
    talkinghead_mocap: str | None = None  # ifacialmocap[:PHONE_IP] or vmc[:PORT]: face capture drives the pose
    user_data: str | None = None  # the user's saved emotion templates; None: kept in memory only (tests)
    talkinghead_keyframes: str | None = None  # the CPU stream's keyframes per character; None: not kept (tests)
    api_key: str | None = None  # set when secure; filled by main() from api_key.txt
    testing: bool = False


def parse_args(argv: list[str] | None = None) -> Config:
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
    device = p.add_mutually_exclusive_group()
    device.add_argument("--cpu", action="store_true", help="run classify on the CPU (default)")
    device.add_argument("--cuda", action="store_true", help="run classify on CUDA")
    p.add_argument("--classification-model", default=None, metavar="ID_OR_PATH",
                   help="a Hugging Face text-classification model (hub id or local path); default: built-in")
    p.add_argument("--talkinghead-gpu", action="store_true", help="run the THA3 poser on CUDA")
    p.add_argument("--talkinghead-model", default="auto",
                   choices=["auto", "separable_float", "separable_half", "standard_float", "standard_half"],
                   help="THA3 model variant (auto: separable_half on GPU, separable_float on CPU)")
    p.add_argument("--talkinghead-models", default=None, metavar="DIR",
                   help="folder holding <variant>/<network>.pt (default: data/models)")
    p.add_argument("--talkinghead-backend", default="auto", choices=["auto", "torch", "openvino", "onnxruntime"],
                   help="inference backend for the poser (default auto: the fastest available)")
    p.add_argument("--talkinghead-idle-seconds", type=float, default=5.0, metavar="S",
                   help="stop rendering when no result_feed has been open for S seconds; the next viewer "
                        "resumes it (default 5; 0: never stop)")
    p.add_argument("--talkinghead-max-viewers", type=int, default=viewers.DEFAULT_MAX_VIEWERS, metavar="N",
                   help="result_feed streams open at once, all avatars together; the next viewer gets a 503 "
                        f"(default {viewers.DEFAULT_MAX_VIEWERS})")
    p.add_argument("--talkinghead-mocap", default=None, metavar="SOURCE",
                   help="face capture drives the character: ifacialmocap[:PHONE_IP] (UDP 49983) or vmc[:PORT] "
                        "(OSC, default 39539); loopback only unless --listen")
    p.add_argument("--user-data", default=str(weights.DATA_DIR / "user"), metavar="DIR",
                   help="folder for what the user saves, e.g. emotion templates from the manual poser "
                        "(default: data/user)")
    p.add_argument("--talkinghead-keyframes", default=str(weights.DATA_DIR / "cache" / "keyframes"), metavar="DIR",
                   help="folder where the CPU stream keeps each character's keyframes, so a restart or a character "
                        "seen before starts warm (at most 200 MB a character, 1 GB in all; default: "
                        "data/cache/keyframes; 'none': not kept)")
    a = p.parse_args(argv)
    names = [n.strip().strip("'\"") for n in a.enable_modules.strip("'\"").split(",") if n.strip().strip("'\"")]
    try:
        modules.validate(names)
    except modules.UnknownModuleError as e:
        p.exit(2, f"error: {e}\n")
    if a.talkinghead_idle_seconds < 0:
        p.exit(2, "error: --talkinghead-idle-seconds must be 0 or more\n")
    if a.talkinghead_max_viewers < 1:
        p.exit(2, "error: --talkinghead-max-viewers must be 1 or more\n")
    if a.talkinghead_mocap:
        from talkinghead.mocap import MocapError, parse_spec
        try:
            parse_spec(a.talkinghead_mocap)
        except MocapError as e:
            p.exit(2, f"error: --talkinghead-mocap: {e}\n")
    if a.max_content_length <= 0:
        p.exit(2, "error: --max-content-length must be a positive number of MB\n")
    return Config(modules=names, port=a.port, listen=a.listen, secure=a.secure,
                  max_content_length_mb=a.max_content_length, classify_device="cuda" if a.cuda else "cpu",
                  classification_model=a.classification_model, talkinghead_gpu=a.talkinghead_gpu,
                  talkinghead_model=a.talkinghead_model, talkinghead_models=a.talkinghead_models,
                  talkinghead_backend=a.talkinghead_backend, talkinghead_idle_seconds=a.talkinghead_idle_seconds,
                  talkinghead_max_viewers=a.talkinghead_max_viewers, talkinghead_mocap=a.talkinghead_mocap, user_data=a.user_data,
                  talkinghead_keyframes=None if a.talkinghead_keyframes.lower() == "none" else a.talkinghead_keyframes)


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
        if config.user_data and "talkinghead" in config.modules:
            _check_writable(Path(config.user_data))
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


def _check_writable(folder: Path) -> None:
    """The folder for what the user saves must take a file, or saving would fail later, in the middle of use."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise modules.SetupError(f"the data folder {folder} is not writable ({e.strerror or e}); make it "
                                 "writable, or choose another with --user-data DIR") from None


if __name__ == "__main__":
    sys.exit(main())
