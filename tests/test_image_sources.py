"""Image sources: data URIs, raw bytes, PIL images and http URLs from a local server, with its cache."""

from __future__ import annotations

import base64
import functools
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.data_files import digit, digit_pixels_rgb, png_bytes, write_digit_png
from vlmtune.data.errors import DataError
from vlmtune.data.images import ImageOptions, load_image, url_cache_path
from vlmtune.data.messages import resolve_image_reference


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def image_server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1 and yield (base URL, folder, counter of GET requests)."""
    folder = tmp_path / "www"
    folder.mkdir()
    requests = []

    class CountingHandler(QuietHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(CountingHandler, directory=folder))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder, requests
    server.shutdown()
    server.server_close()


def assert_is_digit(image, index: int) -> None:
    assert image.mode == "RGB"
    assert np.array_equal(np.asarray(image), digit_pixels_rgb(index))


def test_data_uri_bytes_and_pil(tmp_path):
    uri = "data:image/png;base64," + base64.b64encode(png_bytes(1)).decode()
    assert_is_digit(load_image(resolve_image_reference(uri, tmp_path, "s"), "s"), 1)
    assert_is_digit(load_image(resolve_image_reference(png_bytes(2), tmp_path, "s"), "s"), 2)
    assert_is_digit(
        load_image(resolve_image_reference({"bytes": png_bytes(3), "path": "x.png"}, tmp_path, "s"), "s"), 3
    )
    assert_is_digit(load_image(resolve_image_reference(digit(4)[0], tmp_path, "s"), "s"), 4)


def test_bad_data_uri(tmp_path):
    with pytest.raises(DataError) as raised:
        load_image("data:image/png;base64,@@@", "d.jsonl:4")
    assert raised.value.kind == "corrupt_image"
    assert str(raised.value).startswith("d.jsonl:4: data URI data:image/png;base64,... has invalid base64 data")
    with pytest.raises(DataError, match=r"^d\.jsonl:4: data URI 'data:image/png,abc'\.\.\. is not base64-encoded\."):
        load_image("data:image/png,abc", "d.jsonl:4")


def test_url_downloaded_once_then_cached(image_server, tmp_path):
    base, folder, requests = image_server
    write_digit_png(folder, 5)
    options = ImageOptions(url_cache_dir=str(tmp_path / "cache"))
    url = f"{base}/5.png"
    assert_is_digit(load_image(url, "s", options), 5)
    assert_is_digit(load_image(url, "s", options), 5)
    assert requests == ["/5.png"]
    assert url_cache_path(url, options).read_bytes() == (folder / "5.png").read_bytes()


def test_url_not_found_named(image_server, tmp_path):
    base, _, _ = image_server
    with pytest.raises(DataError) as raised:
        load_image(f"{base}/absent.png", "d.jsonl:2", ImageOptions(url_cache_dir=str(tmp_path / "c")))
    assert raised.value.kind == "missing_image"
    assert str(raised.value) == (
        f"d.jsonl:2: image URL {base}/absent.png could not be downloaded (File not found). "
        "Check the URL, or download the images and use local paths."
    )


def test_url_size_limit(image_server, tmp_path):
    base, folder, _ = image_server
    path = write_digit_png(folder, 6)
    size = path.stat().st_size
    options = ImageOptions(url_max_bytes=size - 1, url_cache_dir=str(tmp_path / "c"))
    with pytest.raises(DataError) as raised:
        load_image(f"{base}/6.png", "d.jsonl:3", options)
    assert str(raised.value) == (
        f"d.jsonl:3: image URL {base}/6.png is larger than the download limit of {size - 1} bytes. "
        "Raise --url-max-bytes or use a smaller image."
    )
    assert not url_cache_path(f"{base}/6.png", options).exists()
    assert_is_digit(
        load_image(f"{base}/6.png", "s", ImageOptions(url_max_bytes=size, url_cache_dir=str(tmp_path / "c"))), 6
    )


def test_url_timeout(tmp_path):
    # A listening socket that never responds makes the request wait for the timeout.
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/slow.png"
        with pytest.raises(DataError, match=r"^s: image URL .*/slow\.png could not be downloaded \(timed out\)"):
            load_image(url, "s", ImageOptions(url_timeout=0.5, url_cache_dir=str(Path(tmp_path) / "c")))
    finally:
        silent.close()
