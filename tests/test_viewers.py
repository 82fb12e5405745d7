"""Viewers hold no request thread: result_feed's sockets go to one writer thread (modules/stream_server.py), the
bytes on the wire stay what waitress sent, the API answers while many watch, the viewer past
--talkinghead-max-viewers gets a 503, and threads and file descriptors come back when viewers leave."""
from __future__ import annotations

import collections
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import requests

from modules import security, stream_server
from modules.talkinghead.routes import stream_response
from network import RunningServer, free_port, stop_process, wait_for
from server import Config, create_app, make_server
from talkinghead import stream
from talkinghead.renderer import FrameSlot

REPO = Path(__file__).resolve().parent.parent
BOUNDARY = b"--frame\r\n"


def source(value: int = 7, size: int = 8) -> SimpleNamespace:
    """A stream source as an avatar would be: a slot holding one frame, and its viewer count."""
    slot = FrameSlot()
    slot.publish(np.full((size, size, 4), value, np.uint8), 0.0)
    return SimpleNamespace(slot=slot, viewers=stream.Viewers())


def app_with(fake_engine, sources: dict | None = None, **config):
    """The server's app, plus a test route serving `sources` by name the way an avatar's result_feed does."""
    app = create_app(Config(modules=["talkinghead"], **config), engines={"talkinghead": fake_engine})
    app.add_url_rule("/test/feeds/<name>", "test_feed", lambda name: stream_response(sources[name]))
    return app


@pytest.fixture
def serve():
    started = []

    def start(app, plain_waitress: bool = False, **options) -> RunningServer:
        if plain_waitress:  # what served result_feed before: the generator on a request thread
            import waitress
            server = waitress.create_server(app, host="127.0.0.1", port=0, asyncore_use_poll=True, **options)
        else:
            server = make_server(app, host="127.0.0.1", port=0, asyncore_use_poll=True, **options)
        started.append(RunningServer(server))
        return started[-1]

    yield start
    for served in started:
        served.close()


def raw_get(port: int, path: str, version: str, body_size: int) -> tuple[bytes, bytes]:
    """The head and the first `body_size` bytes of the body of the answer to a hand-written GET."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/{version}\r\nHost: x\r\nOrigin: http://x\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < body_size:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body[:body_size]


@pytest.mark.parametrize("query", ["", "?format=jpeg&bg=102030"])
@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_the_handed_off_stream_is_byte_for_byte_what_waitress_sent(fake_engine, serve, query, version):
    """Status line, headers, chunked framing (HTTP/1.1) or none (1.0), part heads and frames: the same bytes as
    the generator on a request thread sent, the keep-alive repeat a second later included."""
    feeds = {"a": source()}
    app = app_with(fake_engine, feeds)
    background = (0x10, 0x20, 0x30) if query else None
    part, head = stream.part(feeds["a"].slot.latest(), background), stream.first_head(background)
    chunked = version == "1.1"
    body = b"".join(b"%X\r\n%b\r\n" % (len(x), x) if chunked else x for x in (head, part, part))
    answers = [raw_get(serve(app, plain_waitress=plain).port, "/test/feeds/a" + query, version, len(body))
               for plain in (True, False)]
    (plain_head, plain_body), (head_now, body_now) = answers
    date = lambda h: [line for line in h.split(b"\r\n") if not line.startswith(b"Date: ")]  # noqa: E731
    assert date(head_now) == date(plain_head)
    assert (b"Transfer-Encoding: chunked" in head_now) == chunked and b"Connection: close" in head_now
    assert body_now == plain_body == body


def stream_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name in ("talkinghead-viewers", "talkinghead-broadcast")]


@pytest.fixture
def no_stream_threads():
    """No writer or broadcast thread left from an earlier test (its viewer gone, unnoticed until a write)."""
    assert wait_for(lambda: not stream_threads(), 5), stream_threads()


def test_viewers_hold_no_request_thread(fake_engine, serve, no_stream_threads):
    """Two request threads, eight viewers watching: the API still answers (before, the third viewer waited)."""
    served = serve(app_with(fake_engine), threads=2)
    feeds = [requests.get(served.url + "/api/talkinghead/result_feed?format=jpeg", stream=True, timeout=5)
             for _ in range(8)]
    readers = [stream.PartReader(feed.iter_content(chunk_size=None)) for feed in feeds]
    assert all(len(reader.read(2)) == 2 for reader in readers)
    stats = requests.get(served.url + "/api/talkinghead/stats", timeout=5)
    assert stats.status_code == 200 and stats.json()["viewers"] == 8
    assert requests.post(served.url + "/api/talkinghead/set_emotion", json={"emotion_name": "joy"},
                         timeout=5).text == "emotion set to joy"
    assert stream_threads() == ["talkinghead-viewers", "talkinghead-broadcast"]  # one writer, one encoder
    for feed in feeds:
        feed.close()


def test_each_source_streams_its_own_frames_from_one_writer(fake_engine, serve, no_stream_threads):
    """The stream handler takes the source it is given (an avatar's, later): two sources, their own frames, one
    writer thread and one broadcast thread per watched source; both threads end when the viewers leave."""
    feeds = {"red": source(200), "blue": source(30)}
    served = serve(app_with(fake_engine, feeds))
    responses = {name: requests.get(f"{served.url}/test/feeds/{name}", stream=True, timeout=5) for name in feeds}
    for name, response in responses.items():
        (_, payload), = stream.PartReader(response.iter_content(chunk_size=None)).read(1)
        assert payload == feeds[name].slot.latest().png
        assert feeds[name].viewers.count == 1
    assert sorted(stream_threads()) == ["talkinghead-broadcast", "talkinghead-broadcast", "talkinghead-viewers"]
    for response in responses.values():
        response.close()
    assert wait_for(lambda: not stream_threads(), 5), stream_threads()
    assert all(feed.viewers.count == 0 for feed in feeds.values())


def test_a_sources_viewers_streams_end_when_it_is_gone_and_the_others_go_on(fake_engine, serve, no_stream_threads):
    """A deleted avatar closes its slot: its viewers' responses end (the chunked body properly terminated),
    a viewer of another source keeps streaming, and the gone source's broadcast thread ends."""
    feeds = {"gone": source(200), "kept": source(30)}
    served = serve(app_with(fake_engine, feeds))
    responses = {name: requests.get(f"{served.url}/test/feeds/{name}", stream=True, timeout=5) for name in feeds}
    readers = {name: stream.PartReader(response.iter_content(chunk_size=None)) for name, response in responses.items()}
    for reader in readers.values():
        assert len(reader.read(1)) == 1
    feeds["gone"].slot.close()
    assert readers["gone"].read(5) == []  # the body ends (requests reads the chunked end, no error)
    feeds["kept"].slot.publish(np.full((8, 8, 4), 31, np.uint8), 1.0)
    (_, payload), = readers["kept"].read(1)
    assert payload == feeds["kept"].slot.latest().png
    assert wait_for(lambda: sorted(stream_threads()) == ["talkinghead-broadcast", "talkinghead-viewers"], 5)
    responses["kept"].close()
    assert wait_for(lambda: not stream_threads(), 5), stream_threads()


def test_the_viewer_past_the_cap_gets_a_503_json_and_a_leaving_viewer_frees_its_place(fake_engine, serve):
    served = serve(app_with(fake_engine, talkinghead_max_viewers=3))
    url = served.url + "/api/talkinghead/result_feed"
    feeds = [requests.get(url, stream=True, timeout=5) for _ in range(3)]
    assert [feed.status_code for feed in feeds] == [200, 200, 200]
    refused = requests.get(url, headers={"Origin": "http://x"}, timeout=5)
    assert refused.status_code == 503 and refused.headers["Access-Control-Allow-Origin"] == "http://x"
    message = refused.json()["error"]
    assert message.startswith("503:") and "3 viewers" in message and "--talkinghead-max-viewers" in message
    feeds[0].close()
    # Gone when a write to it fails (a frame or two); then a new viewer is let in.
    assert wait_for(lambda: requests.get(url, stream=True, timeout=5).status_code == 200, 5)


def test_the_cap_holds_for_the_test_client_too(fake_engine):
    client = app_with(fake_engine, talkinghead_max_viewers=1).test_client()
    first = client.get("/api/talkinghead/result_feed")
    assert client.get("/api/talkinghead/result_feed").status_code == 503
    first.close()
    second = client.get("/api/talkinghead/result_feed")
    assert second.status_code == 200
    second.close()


def test_a_viewer_that_reads_nothing_is_closed_and_frees_its_place(fake_engine, serve, monkeypatch):
    """Its unsent bytes stay over the mark for STALLED_S (30 s; 0.5 here): the stream is closed."""
    monkeypatch.setattr(stream_server, "STALLED_S", 0.5)
    feeds = {"noise": SimpleNamespace(slot=FrameSlot(), viewers=stream.Viewers())}
    served = serve(app_with(fake_engine, feeds, talkinghead_max_viewers=1))
    noise = np.random.default_rng(0).integers(0, 256, (512, 512, 4), dtype=np.uint8)  # ~1 MB PNGs
    done = threading.Event()

    def render():
        for i in range(1, 200):
            feeds["noise"].slot.publish(np.roll(noise, i, axis=1), i)
            if done.wait(0.04):
                return
    threading.Thread(target=render, daemon=True).start()
    try:
        with socket.create_connection(("127.0.0.1", served.port)) as stuck:
            stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
            stuck.sendall(b"GET /test/feeds/noise HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
            assert wait_for(lambda: feeds["noise"].viewers.count == 1, 5)
            assert wait_for(lambda: feeds["noise"].viewers.count == 0, 10)
            assert feeds["noise"].viewers.count == 0
            assert requests.get(served.url + "/test/feeds/noise", stream=True, timeout=5).status_code == 200
    finally:
        done.set()


def test_avatar_feeds_need_no_key_as_the_default_feed():
    assert security.is_exempt("/api/talkinghead/avatars/alice/result_feed")
    assert not security.is_exempt("/api/talkinghead/avatars/alice/set_emotion")
    assert not security.is_exempt("/api/talkinghead/avatars/a/b/result_feed")


# ---- a real server.py process -----------------------------------------------------------------------------------
class Watchers(threading.Thread):
    """`count` result_feed viewers on raw sockets, all read by this one thread as fast as the bytes come; each
    viewer's status line and the parts it received (boundaries counted)."""

    def __init__(self, port: int, path: str, count: int):
        super().__init__(daemon=True)
        self.selector = selectors.DefaultSelector()
        self.seen: dict[socket.socket, list] = {}  # socket -> [first bytes, parts, tail]
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            s.setblocking(False)
            self.selector.register(s, selectors.EVENT_READ)
            self.seen[s] = [b"", 0, b""]
        self.halt = threading.Event()
        self.start()

    def run(self):
        while not self.halt.is_set():
            for key, _ in self.selector.select(timeout=0.1):
                data = key.fileobj.recv(1 << 16)
                entry = self.seen[key.fileobj]
                if not entry[0]:
                    entry[0] = data[:20]
                both = entry[2] + data
                entry[1] += both.count(BOUNDARY)
                entry[2] = both[-(len(BOUNDARY) - 1):]
                if not data:
                    self.selector.unregister(key.fileobj)

    def parts(self) -> list[int]:
        return [entry[1] for entry in self.seen.values()]

    def close(self):
        self.halt.set()
        self.join(timeout=5)
        for s in self.seen:
            s.close()


def threads_and_fds(pid: int) -> tuple[int, int]:
    return len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd"))


def described(pid: int) -> dict:
    """The threads' names and what the descriptors are, to say what was left."""
    fds = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            fds.append(os.readlink(f"/proc/{pid}/fd/{fd}").split(":")[0])
        except OSError:
            pass
    return {"threads": sorted(Path(f"/proc/{pid}/task/{t}/comm").read_text().strip()
                              for t in os.listdir(f"/proc/{pid}/task")), "fds": sorted(fds)}


def left_over(before: dict, after: dict) -> dict:
    return {key: dict(collections.Counter(after[key]) - collections.Counter(before[key])) for key in before}


def not_above(now: tuple[int, int], before: tuple[int, int]) -> bool:
    return now[0] <= before[0] and now[1] <= before[1]


@pytest.mark.slow
def test_a_real_server_answers_the_api_while_42_watch_refuses_the_43rd_and_frees_all(require_weights, tmp_path):
    """server.py (both modules, the real weights): 42 JPEG viewers (the cap), meanwhile classify, set_emotion
    and stats answer; the 43rd viewer gets the 503; after they leave the process has the threads and file
    descriptors of before (/proc/<pid>/task and fd), once it is idle again."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "server.py", "--enable-modules=classify,talkinghead", "--port",
                               str(port), "--talkinghead-max-viewers=42", "--talkinghead-idle-seconds=1",
                               "--talkinghead-keyframes=none"], cwd=REPO,
                              stdout=(tmp_path / "server.log").open("wb"), stderr=subprocess.STDOUT)

    def api(method: str, path: str, **kwargs) -> requests.Response:
        """One request on its own connection, closed after it (a kept-alive one would count in the FDs)."""
        return requests.request(method, base + path, headers={"Connection": "close"}, timeout=30, **kwargs)
    stats = lambda: api("GET", "/api/talkinghead/stats").json()  # noqa: E731
    try:
        def up():
            try:
                return api("GET", "/api/modules").ok
            except requests.RequestException:
                return server.poll() is not None
        assert wait_for(up, 300) and server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
        # Warm-up: what stays once made (the classifier's thread pool), then the baseline, idle.
        assert api("POST", "/api/classify", json={"text": "I am happy"}).ok
        warm = Watchers(port, "/api/talkinghead/result_feed?format=jpeg", 1)
        assert wait_for(lambda: warm.parts()[0] >= 3, 30)
        warm.close()
        assert wait_for(lambda: stats()["state"] == "idle" and stats()["viewers"] == 0, 30)
        time.sleep(1.5)  # the stream's threads end within a keep-alive of the last viewer leaving
        before, described_before = threads_and_fds(server.pid), described(server.pid)

        watchers = Watchers(port, "/api/talkinghead/result_feed?format=jpeg", 42)
        assert wait_for(lambda: min(watchers.parts()) >= 3, 60), watchers.parts()
        assert {entry[0][:15] for entry in watchers.seen.values()} == {b"HTTP/1.1 200 OK"}
        during = threads_and_fds(server.pid)
        assert during[0] <= before[0] + 4, (before, during)  # no thread per viewer: the writer, one broadcast
        classified = api("POST", "/api/classify", json={"text": "This is terrible."})
        assert classified.status_code == 200 and classified.json()["classification"]
        assert api("POST", "/api/talkinghead/set_emotion", json={"emotion_name": "anger"}).text == \
            "emotion set to anger"
        now = stats()
        assert now["viewers"] == 42 and now["emotion"] == "anger" and now["state"] == "running"
        refused = api("GET", "/api/talkinghead/result_feed")
        assert refused.status_code == 503 and "42" in refused.json()["error"]
        parts = watchers.parts()
        time.sleep(1.0)
        assert min(b - a for a, b in zip(parts, watchers.parts())) >= 3  # all of them still streaming

        watchers.close()
        assert wait_for(lambda: stats()["viewers"] == 0 and stats()["state"] == "idle", 30)
        assert wait_for(lambda: not_above(threads_and_fds(server.pid), before), 15), \
            f"left: {left_over(described_before, described(server.pid))}"
    finally:
        stop_process(server)
