"""deeplab serve: the API, bad uploads, batching, the bounded queue, a draining SIGTERM, the web page."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from deeplab import Segmenter, load_model  # noqa: E402
from deeplab.apps.serve import ServeSettings, create_app  # noqa: E402
from deeplab.models import build_model, save_model  # noqa: E402
from tiny_model import tiny_image  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("serve") / "tiny.pt"
    save_model(path, build_model("deeplabv3-mobilenetv2", num_classes=4, width_mult=0.25))
    return str(path)


def _client(weights: str, **settings) -> TestClient:
    return TestClient(create_app(ServeSettings(weights=weights, segmenter={"backend": "torch"}, **settings)))


def _png(rgb: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt)
    return buffer.getvalue()


def _post(client: TestClient, data: bytes, name: str = "photo.png", kind: str = "image/png", **params):
    return client.post("/v1/segment", params=params, files={"image": (name, data, kind)})


def test_segment_answers_as_asked(weights):
    image = tiny_image(48, 64, seed=2)
    expected = Segmenter(load_model(weights), backend="torch")(image, probs=False).labels  # as predict gives them
    with _client(weights) as client:
        labels = _post(client, _png(image))
        assert labels.status_code == 200 and labels.headers["content-type"] == "image/png"
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(labels.content))), expected)
        answer = client.post(
            "/v1/segment", files={"image": ("p.png", _png(image), "image/png")}, headers={"Accept": "application/json"}
        ).json()
        decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["labels_png"]))))
        assert np.array_equal(decoded, expected) and answer["size"] == [48, 64]
        assert sum(c["pixels"] for c in answer["classes"]) == 48 * 64
        overlay = _post(client, _png(image), overlay="true")
        assert Image.open(io.BytesIO(overlay.content)).size[0] > 64  # the photo and its legend
        jpeg = _post(client, _png(image, "JPEG"), name="p.jpg", kind="image/jpeg", format="json")
        assert jpeg.status_code == 200


def test_model_health_metrics_and_schema(weights):
    with _client(weights) as client:
        assert client.get("/healthz").json() == {"status": "ok"} and client.get("/readyz").status_code == 200
        model = client.get("/v1/model").json()
        assert model["arch"] == "deeplabv3-mobilenetv2" and len(model["classes"]) == len(model["palette"]) == 4
        _post(client, _png(tiny_image(32, 32)))
        metrics = client.get("/metrics").text
        assert 'deeplab_requests_total{status="200"} 1.0' in metrics and "deeplab_batch_size_bucket" in metrics
        assert "/v1/segment" in client.get("/openapi.json").json()["paths"]
        assert "Drop a photo" in client.get("/").text


def test_bad_uploads_get_one_line_and_the_server_stays_up(weights):
    bomb = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(bomb, format="PNG")  # 100 megapixels in a few kB
    good = _png(tiny_image(40, 40))
    cases = [
        (b"just text", "notes.txt", "text/plain", 415),
        (b"just text", "photo.png", "image/png", 400),
        (b"", "empty.png", "image/png", 400),
        (good[: len(good) // 2], "truncated.png", "image/png", 400),
        (bomb.getvalue(), "bomb.png", "image/png", 413),
        (bytes(101 * 2**20), "huge.png", "image/png", 413),
    ]
    with _client(weights) as client:
        for data, name, kind, status in cases:
            answer = _post(client, data, name, kind)
            assert answer.status_code == status, (name, answer.text)
            message = answer.json()["error"]
            assert message.startswith(name) and "\n" not in message
            assert _post(client, good).status_code == 200  # and the next request is served


def test_concurrent_requests_are_batched(weights):
    with _client(weights, max_batch=8, max_wait_ms=300) as client:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda k: _post(client, _png(tiny_image(40, 56, seed=k))), range(8)))
        assert all(a.status_code == 200 for a in answers)
        metrics = client.get("/metrics").text
        count = float(metrics.split("deeplab_batch_size_count ")[1].split()[0])
        assert count < 8  # fewer network batches than requests


def test_a_full_queue_answers_503_and_recovers(weights, monkeypatch):
    slow = Segmenter.probabilities

    def probabilities(self, images):
        time.sleep(0.3)
        return slow(self, images)

    monkeypatch.setattr(Segmenter, "probabilities", probabilities)
    with _client(weights, max_batch=1, max_queue=1, max_wait_ms=0) as client:
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda k: _post(client, _png(tiny_image(32, 32, seed=k))), range(6)))
        busy = [a for a in answers if a.status_code == 503]
        assert busy and all(a.headers["Retry-After"] == "1" and "busy" in a.json()["error"] for a in busy)
        assert any(a.status_code == 200 for a in answers)
        assert _post(client, _png(tiny_image(32, 32))).status_code == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_sigterm_drains_in_flight_requests(weights, tmp_path):
    """The real server (uvicorn, `deeplab serve`): SIGTERM while requests run, every one answered,
    the process gone within 10 s."""
    import signal
    import subprocess
    import sys

    import httpx

    port = _free_port()
    args = ["-m", "deeplab", "serve", "--weights", weights, "--port", str(port), "--backend", "torch"]
    server = subprocess.Popen([sys.executable, *args], stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        image = _png(tiny_image(256, 256))

        def post(_):
            return httpx.post(
                f"{url}/v1/segment", files={"image": ("p.png", image, "image/png")}, timeout=30
            ).status_code

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(post, k) for k in range(4)]
            time.sleep(0.3)
            server.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            statuses = [f.result() for f in futures]
        server.wait(timeout=10)
        assert time.monotonic() - stopped < 10 and statuses == [200] * 4
    finally:
        server.kill()


def _chromium() -> str:
    import shutil

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no chromium installed (apt-get install chromium)")
    pytest.importorskip("playwright")
    return path


@pytest.mark.slow
def test_the_web_page_in_a_real_browser_at_phone_width(weights, tmp_path):
    """Debian's chromium through Playwright: pick a photo, see the overlay, the legend and the time,
    with nothing wider than a 390 px phone screen."""
    import uvicorn
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    port = _free_port()
    config = uvicorn.Config(
        create_app(ServeSettings(weights=weights, segmenter={"backend": "torch"})), port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    Image.fromarray(tiny_image(300, 400, seed=4)).save(tmp_path / "photo.jpg")
    try:
        while not server.started:
            time.sleep(0.05)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("text=Model: ")
            page.set_input_files("#file", str(tmp_path / "photo.jpg"))
            page.wait_for_selector("#results:not([hidden])", timeout=30_000)
            assert "segmented in" in page.inner_text("#status")
            assert page.inner_text("#legend").strip()  # the classes present, with their share
            assert page.evaluate("document.getElementById('overlay').naturalWidth") == 400  # the photo's own size
            assert page.evaluate("document.documentElement.scrollWidth") <= 390  # fits a phone
            page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
