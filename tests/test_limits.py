"""Request body limits: 413 JSON beyond them, the body not read; bad uploads say what is wrong, plainly."""
from __future__ import annotations

import io
import os
import re
import socket
import threading

import pytest

import server
from modules import limits
from server import Config, create_app, make_server

MB = 2**20


@pytest.fixture
def app(fake_engine):
    return create_app(Config(modules=["talkinghead"]), engines={"talkinghead": fake_engine})


def test_default_limit_fits_ten_minutes_of_wav_and_images_get_less():
    assert server.parse_args([]).max_content_length_mb == limits.DEFAULT_MB
    ten_minutes_wav = 44 + 600 * 24000 * 2  # 24 kHz, 16-bit, mono
    assert ten_minutes_wav < limits.DEFAULT_MB * MB
    assert 2 * MB < limits.SMALL_BODY_MB * MB < limits.DEFAULT_MB * MB  # a 512x512 RGBA PNG is under 1.1 MB


def test_image_over_the_route_limit_is_413_json_and_keeps_the_character(app, fake_engine):
    before = fake_engine.poser.image.copy()
    response = app.test_client().post("/api/talkinghead/load", headers={"Origin": "http://x"},
                                      data={"file": (io.BytesIO(os.urandom(9 * MB)), "big.png")})
    assert response.status_code == 413
    message = response.get_json()["error"]
    assert message.startswith("413: the request body") and "8 MB" in message and "--max-content-length" in message
    assert response.headers["Access-Control-Allow-Origin"] == "http://x"
    assert (fake_engine.poser.image == before).all()


def test_lipsync_takes_the_full_limit(app):
    client = app.test_client()
    over_small = client.post("/api/talkinghead/lipsync?analyze_only=1", data=os.urandom(9 * MB),
                             content_type="audio/wav")
    assert over_small.status_code == 400 and "audio" in over_small.get_json()["error"]  # read, not refused
    over_full = client.post("/api/talkinghead/lipsync", data=b"\0" * (33 * MB), content_type="audio/wav")
    assert over_full.status_code == 413 and "32 MB" in over_full.get_json()["error"]


def test_random_bytes_upload_is_400_without_internal_reprs(app):
    response = app.test_client().post("/api/talkinghead/load",
                                      data={"file": (io.BytesIO(os.urandom(MB)), "noise.png")})
    assert response.status_code == 400
    message = response.get_json()["error"]
    assert "not a readable image" in message and "kept" in message
    assert not re.search(r"0x[0-9a-f]{4,}|<\w+[.\w]* object", message), message


@pytest.fixture
def served(app):
    """The app behind waitress, as server.py serves it: `ask(raw request bytes)` -> (head, body)."""
    srv = make_server(app, host="127.0.0.1", port=0, threads=2)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()

    def ask(request: bytes) -> tuple[bytes, bytes]:
        with socket.create_connection(("127.0.0.1", srv.effective_port), timeout=5) as s:
            s.sendall(request)
            answer = b""
            while b"}" not in answer:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        return head, body

    yield ask
    srv.close()
    thread.join(timeout=5)


def test_waitress_refuses_a_body_over_the_limit_before_reading_it(served):
    """50 MB announced, a few bytes sent: the answer comes at once (nothing waits for the body), as JSON."""
    head, body = served(b"POST /api/talkinghead/load HTTP/1.1\r\nHost: x\r\nOrigin: http://x\r\n"
                        b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 52428800\r\n\r\n"
                        + b"x" * 1000)
    assert head.startswith(b"HTTP/1.1 413")
    assert b"Content-Type: application/json" in head and b"Access-Control-Allow-Origin: http://x" in head
    assert b'"error": "413: the request body (50 MB) is over the 32 MB' in body and b"it was not read" in body


def test_a_request_waitress_cannot_parse_is_a_json_400(served):
    head, body = served(b"GET /api/modules HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"Content-Type: application/json" in head
    assert body == b'{"error": "400: Bad Request: Content-Length is invalid"}'
