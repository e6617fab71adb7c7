"""Tests for scratchprop.data.download against a local HTTP server only.

Nothing here reaches the internet: every URL is on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from scratchprop.data import DataError, download, load_mnist, write_idx
from scratchprop.data.download import CHECKSUMS, MIRRORS

NAMES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


@pytest.fixture(scope="module")
def payloads(tmp_path_factory):
    """name -> bytes of four small valid IDX .gz files."""
    rng = np.random.default_rng(1)
    d = tmp_path_factory.mktemp("src")
    arrays = [
        rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        np.arange(6, dtype=np.uint8),
        rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        np.arange(3, dtype=np.uint8),
    ]
    return {n: write_idx(d / n, a).read_bytes() for n, a in zip(NAMES, arrays)}


def md5s(payloads):
    return {n: hashlib.md5(b).hexdigest() for n, b in payloads.items()}


class Server:
    """Serves ``routes`` (URL path -> bytes); counts requests per path."""

    def __init__(self):
        self.routes: dict[str, bytes] = {}
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                body = outer.routes.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                if self.path.startswith("/short/"):  # announce more than is sent
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body) + 1000))
                    self.end_headers()
                    self.wfile.write(body[:10])
                    self.close_connection = True
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def serve(self, prefix, files):
        for name, body in files.items():
            self.routes[f"/{prefix}/{name}"] = body
        return f"{self.base}/{prefix}/"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


def raw_dir(root: Path) -> Path:
    return root / "MNIST" / "raw"


def test_downloads_and_verifies(tmp_path, server, payloads):
    mirror = server.serve("good", payloads)
    messages = []
    paths = download(
        "mnist", tmp_path, mirrors=[mirror], checksums=md5s(payloads), timeout=5, log=messages.append
    )
    assert paths == [raw_dir(tmp_path) / n for n in NAMES]
    for p in paths:
        assert p.read_bytes() == payloads[p.name]
    assert sorted(p.name for p in raw_dir(tmp_path).iterdir()) == sorted(NAMES)
    assert len(server.requests) == 4 and any("checksum ok" in m for m in messages)
    (x, t), (xt, tt) = load_mnist(tmp_path)
    assert x.shape == (6, 784) and xt.shape == (3, 784)


def test_sha256_checksums_accepted(tmp_path, server, payloads):
    mirror = server.serve("good", payloads)
    sums = {n: hashlib.sha256(b).hexdigest() for n, b in payloads.items()}
    assert len(download("fashion-mnist", tmp_path, mirrors=[mirror], checksums=sums)) == 4
    assert (tmp_path / "FashionMNIST" / "raw" / NAMES[0]).is_file()


def test_corrupt_file_leaves_nothing(tmp_path, server, payloads):
    sums = md5s(payloads)
    served = dict(payloads)
    bad = NAMES[1]
    served[bad] = payloads[bad][:-5] + b"XXXXX"  # wrong bytes for the published checksum
    mirror = server.serve("good", served)
    with pytest.raises(DataError) as info:
        download("mnist", tmp_path, mirrors=[mirror], checksums=sums, timeout=5)
    msg = str(info.value)
    assert bad in msg and mirror + bad in msg and "checksum mismatch" in msg
    assert sums[bad] in msg and "offline" not in msg
    # Only the file completed before the bad one exists; no temp files.
    assert [p.name for p in raw_dir(tmp_path).iterdir()] == [NAMES[0]]


def test_truncated_transfer_leaves_nothing(tmp_path, server, payloads):
    mirror = server.serve("short", payloads)
    with pytest.raises(DataError, match=NAMES[0]):
        download("mnist", tmp_path, mirrors=[mirror], checksums=md5s(payloads), timeout=5)
    assert not raw_dir(tmp_path).exists()  # nothing, not even the directories it made


def test_next_mirror_after_404_or_bad_checksum(tmp_path, server, payloads):
    missing = server.serve("missing", {})
    corrupt = server.serve("corrupt", {n: b"\x1f\x8bjunk" for n in NAMES})
    good = server.serve("good", payloads)
    paths = download("mnist", tmp_path, mirrors=[missing, corrupt, good], checksums=md5s(payloads), timeout=5)
    assert [p.read_bytes() for p in paths] == [payloads[n] for n in NAMES]
    for name in NAMES:
        assert server.requests.count(f"/missing/{name}") == 1
        assert server.requests.count(f"/good/{name}") == 1
    assert sorted(p.name for p in raw_dir(tmp_path).iterdir()) == sorted(NAMES)


def test_existing_good_files_are_skipped(tmp_path, server, payloads):
    mirror = server.serve("good", payloads)
    sums = md5s(payloads)
    download("mnist", tmp_path, mirrors=[mirror], checksums=sums, timeout=5)
    server.requests.clear()
    messages = []
    download("mnist", tmp_path, mirrors=[mirror], checksums=sums, log=messages.append)
    assert server.requests == [] and sum("already present" in m for m in messages) == 4
    # A damaged local file is fetched again, and only that one.
    (raw_dir(tmp_path) / NAMES[2]).write_bytes(b"damaged")
    download("mnist", tmp_path, mirrors=[mirror], checksums=sums)
    assert server.requests == [f"/good/{NAMES[2]}"]
    assert (raw_dir(tmp_path) / NAMES[2]).read_bytes() == payloads[NAMES[2]]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_mirror_gives_offline_message(tmp_path, payloads):
    urls = [f"http://127.0.0.1:{_free_port()}/a/", f"http://127.0.0.1:{_free_port()}/b"]
    with pytest.raises(DataError) as info:
        download("mnist", tmp_path, mirrors=urls, checksums=md5s(payloads), timeout=2)
    msg = str(info.value)
    assert NAMES[0] in msg and urls[0] + NAMES[0] in msg and urls[1] + "/" + NAMES[0] in msg
    assert "cannot connect" in msg and "offline" in msg
    # the directories the failed download created are gone; the root it was given stays
    assert not raw_dir(tmp_path).exists() and not raw_dir(tmp_path).parent.exists()
    assert tmp_path.is_dir()


def test_a_failed_download_removes_only_the_directories_it_created(tmp_path, payloads):
    root = tmp_path / "new" / "data"
    keep = raw_dir(tmp_path / "old")
    keep.mkdir(parents=True)
    (keep / "mine.txt").write_text("x")
    urls = [f"http://127.0.0.1:{_free_port()}/"]
    for where in (root, tmp_path / "old"):
        with pytest.raises(DataError):
            download("mnist", where, mirrors=urls, checksums=md5s(payloads), timeout=2)
    assert not (tmp_path / "new").exists()  # all of it was ours
    assert (keep / "mine.txt").read_text() == "x"  # not ours: untouched


def test_silent_server_times_out(tmp_path, payloads):
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        with pytest.raises(DataError, match="timed out"):
            download("mnist", tmp_path, mirrors=[url], checksums=md5s(payloads), timeout=0.3)
    assert not raw_dir(tmp_path).exists()


def test_argument_errors_and_defaults(tmp_path):
    with pytest.raises(DataError, match="unknown dataset"):
        download("cifar", tmp_path)
    with pytest.raises(DataError, match="no mirrors"):
        download("mnist", tmp_path, mirrors=[])
    with pytest.raises(DataError, match="neither an md5"):
        download("mnist", tmp_path, mirrors=["http://127.0.0.1:9/"], checksums={"a.gz": "abc"})
    for dataset in ("mnist", "fashion-mnist"):
        assert sorted(CHECKSUMS[dataset]) == sorted(NAMES)
        assert all(len(h) == 32 for h in CHECKSUMS[dataset].values())
        assert all(m.startswith("http") for m in MIRRORS[dataset])
