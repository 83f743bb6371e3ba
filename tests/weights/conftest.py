"""Fixtures for the weights tests: a private torch.hub cache, no network, a local HTTP server."""
from __future__ import annotations

import hashlib
import http.server
import io
import threading
import urllib.error
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
import torch

from torchdet.weights import hub

_SERVER_LIFETIME_S = 60.0  # the server shuts itself down after this, whatever happens to the test


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only 127.0.0.1 can be reached: a test that would download from the internet fails fast instead."""
    real = hub._urlopen

    def local_only(url: str, timeout: float):  # noqa: ANN202
        host = urllib.parse.urlparse(url).hostname
        if host != "127.0.0.1":
            raise urllib.error.URLError(f"network disabled in tests (asked for {host})")
        return real(url, timeout)

    monkeypatch.setattr(hub, "_urlopen", local_only)


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ``$TORCH_HOME``; returns its checkpoint folder (``hub/checkpoints``, not created)."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # in case some code called torch.hub.set_dir
    assert hub.checkpoint_dir() == home / "hub" / "checkpoints"
    return home / "hub" / "checkpoints"


@pytest.fixture
def tiny_checkpoint() -> bytes:
    """A small, valid torchvision-style checkpoint (a plain state_dict for nn.Linear(3, 2)), serialised."""
    state_dict = {"weight": torch.arange(6.0).reshape(2, 3), "bias": torch.tensor([0.5, -0.5])}
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    return buffer.getvalue()


@dataclass
class LocalServer:
    """What the server serves: ``/<name>`` -> full body; ``/cut/<name>`` -> half the body, then hang up."""

    base_url: str
    files: Dict[str, bytes] = field(default_factory=dict)
    requests: List[str] = field(default_factory=list)

    def url(self, name: str, *, cut: bool = False) -> str:
        return f"{self.base_url}/{'cut/' if cut else ''}{name}"


def _handler(server_state: LocalServer):  # noqa: ANN202
    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = 10

        def do_GET(self) -> None:  # noqa: N802
            server_state.requests.append(self.path)
            cut = self.path.startswith("/cut/")
            name = self.path[len("/cut/"):] if cut else self.path.lstrip("/")
            body = server_state.files.get(name)
            if body is None:
                self.send_error(404, "no such file")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))  # the full length, even when cut
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if cut else body)
            self.wfile.flush()
            if cut:
                self.close_connection = True

        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

    return Handler


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    """An HTTP server on 127.0.0.1 (ephemeral port) in a thread, stopped after the test (or 60 s)."""
    state = LocalServer(base_url="")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    watchdog = threading.Timer(_SERVER_LIFETIME_S, server.shutdown)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield state
    finally:
        watchdog.cancel()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def official_name():  # noqa: ANN201
    """``official_name(data, stem)`` -> ``stem-<first 8 hex of sha256(data)>.pth``, as published files are named."""
    def name(data: bytes, stem: str = "tiny") -> str:
        return f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    return name
