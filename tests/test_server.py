"""Server-wide behaviour: flags, module registry, CORS, API-key auth, JSON errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import server
from modules import openapi
from server import Config, create_app

REPO = Path(__file__).resolve().parent.parent


def run_server(*args, cwd=REPO, timeout=120):
    return subprocess.run([sys.executable, str(REPO / "server.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def app():
    a = create_app(Config(modules=[]))

    @a.get("/api/boom")
    def boom():
        raise RuntimeError("secret internals")

    return a


def test_modules_lists_enabled_modules_in_given_order():
    config = server.parse_args(["--enable-modules='talkinghead, classify'"])
    assert config.modules == ["talkinghead", "classify"]
    client = create_app(Config(modules=[])).test_client()
    assert client.get("/api/modules").get_json() == {"modules": [], "server": "talkinghead-extras",
                                                      "version": openapi.VERSION}


def test_flag_defaults():
    config = server.parse_args([])
    assert (config.port, config.listen, config.secure, config.classify_device) == (5100, False, False, "cpu")
    assert config.talkinghead_model == "auto" and not config.talkinghead_gpu
    assert server.parse_args(["--cuda"]).classify_device == "cuda"


def test_unknown_module_exits_with_message_listing_known_ones():
    result = run_server("--enable-modules=classify,telepathy")
    assert result.returncode != 0
    assert "unknown module 'telepathy'" in result.stderr
    assert "classify, talkinghead" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_flag_is_a_clear_error():
    result = run_server("--port", "fivethousand")
    assert result.returncode != 0 and "invalid int value" in result.stderr and "Traceback" not in result.stderr


def test_talkinghead_gpu_without_cuda_is_a_one_line_error():
    result = run_server("--enable-modules=talkinghead", "--talkinghead-gpu")
    assert result.returncode != 0
    assert "CUDA" in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: --talkinghead-gpu")


def test_missing_weights_name_the_file(tmp_path):
    result = run_server("--enable-modules=talkinghead", f"--talkinghead-models={tmp_path}")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: missing THA3 weight file") and str(tmp_path) in last


def test_standard_variant_without_files_says_where_to_put_them(tmp_path):
    result = run_server("--enable-modules=talkinghead", f"--talkinghead-models={tmp_path}",
                        "--talkinghead-model=standard_float")
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0 and str(tmp_path / "standard_float") in last and "copy" in last


def test_cors_echoes_origin_with_vary(app):
    response = app.test_client().get("/api/modules", headers={"Origin": "http://localhost:8000"})
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:8000"
    assert "Origin" in response.headers.get("Vary", "")


def test_cors_wildcard_without_origin(app):
    assert app.test_client().get("/api/modules").headers["Access-Control-Allow-Origin"] == "*"


def test_preflight_allows_any_method_and_requested_headers(app):
    response = app.test_client().options("/api/modules", headers={
        "Origin": "http://localhost:8000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization, Content-Type, Bypass-Tunnel-Reminder"})
    assert response.status_code == 200
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    for header in ("authorization", "content-type", "bypass-tunnel-reminder"):
        assert header in allowed
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


@pytest.mark.parametrize("method, path, status", [
    ("get", "/api/nothing-here", 404),
    ("post", "/api/modules", 405),
    ("get", "/api/boom", 500),
])
def test_errors_are_json_with_cors(app, method, path, status):
    response = getattr(app.test_client(), method)(path, headers={"Origin": "http://x"})
    assert response.status_code == status
    assert response.is_json and response.get_json()["error"].startswith(str(status))
    assert response.headers["Access-Control-Allow-Origin"] == "http://x"
    assert "secret internals" not in response.get_data(as_text=True)


def test_upload_over_max_content_length_is_413_json():
    a = create_app(Config(modules=[], max_content_length_mb=0.001))

    @a.post("/api/upload")
    def upload():
        from flask import request
        return {"size": len(request.files["file"].read())}

    response = a.test_client().post("/api/upload", data={"file": (__import__("io").BytesIO(b"x" * 5000), "a.png")})
    assert response.status_code == 413 and response.get_json()["error"].startswith("413")


@pytest.fixture
def secure_app():
    return create_app(Config(modules=[], secure=True, api_key="k" * 32))


def test_secure_rejects_missing_or_wrong_key_with_json_and_cors(secure_app):
    client = secure_app.test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "k" * 32}):
        response = client.get("/api/modules", headers={"Origin": "http://x", **headers})
        assert response.status_code == 401
        assert response.get_json() == {"error": "401: Invalid API key"}
        assert response.headers["Access-Control-Allow-Origin"] == "http://x"


def test_secure_accepts_bearer_key_and_free_preflight(secure_app):
    client = secure_app.test_client()
    assert client.get("/api/modules", headers={"Authorization": "Bearer " + "k" * 32}).status_code == 200
    preflight = client.options("/api/modules", headers={"Origin": "http://x", "Access-Control-Request-Method": "GET",
                                                        "Access-Control-Request-Headers": "Authorization"})
    assert preflight.status_code == 200


def test_secure_key_file_is_created_and_reused(tmp_path):
    from modules.security import load_or_create_key

    key = load_or_create_key(tmp_path / "api_key.txt")
    assert len(key) == 32 and int(key, 16) >= 0
    assert load_or_create_key(tmp_path / "api_key.txt") == key


def test_endpoint_of_a_module_not_enabled_is_403_json():
    client = create_app(Config(modules=[])).test_client()
    response = client.post("/api/classify", json={"text": "hi"})
    assert response.status_code == 403
    assert "not enabled" in response.get_json()["error"] and "--enable-modules=classify" in response.get_json()["error"]
    assert client.get("/api/talkinghead/result_feed").status_code == 403
