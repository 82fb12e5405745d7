"""`python -m talkinghead.manual_poser`: the manual poser in the browser (the original THA3 demo's entry point).

If a server already answers on the port, its poser page is opened; otherwise a talkinghead-only server is
started here as a child process (server.py; any further flags go to it) and the page opens once it answers.

    python -m talkinghead.manual_poser [--port 5100] [--no-browser] [server.py flags, e.g. --talkinghead-gpu]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import webbrowser
from pathlib import Path

PAGE_PATH = "/talkinghead/poser"
SERVER_PROGRAM = Path(__file__).resolve().parents[1] / "server.py"  # the checkout's, or site-packages'
START_TIMEOUT_S = 600  # the first start exports the networks to OpenVINO (about a minute on 2 cores)


def probe(base_url: str, timeout: float = 2.0) -> str:
    """What answers at base_url: "poser" (our server with talkinghead, or one that wants a key: the page
    asks for it), "other" (something without the talkinghead module), or "nothing"."""
    try:
        with urllib.request.urlopen(f"{base_url}/api/modules", timeout=timeout) as response:
            enabled = json.loads(response.read()).get("modules", [])
            return "poser" if "talkinghead" in enabled else "other"
    except urllib.error.HTTPError as e:
        return "poser" if e.code == 401 else "other"
    except (urllib.error.URLError, OSError, ValueError):
        return "nothing"


def open_when_ready(base_url: str, open_page=webbrowser.open, timeout: float = START_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe(base_url, timeout=1.0) == "poser":
            open_page(base_url + PAGE_PATH)
            return True
        time.sleep(0.5)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Other flags are passed on to server.py.")
    parser.add_argument("--port", type=int, default=5100, help="the server's port (default 5100)")
    parser.add_argument("--no-browser", action="store_true", help="only print the page's address")
    args, server_flags = parser.parse_known_args(argv)
    base_url = f"http://127.0.0.1:{args.port}"
    open_page = (lambda url: print(url, flush=True)) if args.no_browser else _open_and_print
    found = probe(base_url)
    if found == "poser":
        open_page(base_url + PAGE_PATH)
        return 0
    if found == "other":
        print(f"error: the server on port {args.port} runs without the talkinghead module; restart it with "
              "--enable-modules=talkinghead or choose another --port", file=sys.stderr)
        return 1
    threading.Thread(target=open_when_ready, args=(base_url, open_page), daemon=True).start()
    # last, so they win over the same flags among the passed-on ones: a talkinghead-only server on this port
    return run_server([*server_flags, "--enable-modules=talkinghead", f"--port={args.port}"])


def run_server(flags: list[str]) -> int:
    """Run the server program (server.py, installed beside these packages; the talkinghead-extras command) with
    `flags` until it stops, and return its exit code. A program of its own, not an import: this launcher stays
    a client of the server, and Flask, the networks and their weights load only there."""
    server = subprocess.Popen([sys.executable, str(SERVER_PROGRAM), *flags])
    while True:
        try:
            return server.wait()
        except KeyboardInterrupt:  # Ctrl+C reached the server too: it stops by itself, then we return its code
            continue


def _open_and_print(url: str) -> None:
    print(f"manual poser: {url}", flush=True)
    webbrowser.open(url)


if __name__ == "__main__":
    sys.exit(main())
