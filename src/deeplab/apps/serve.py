"""``deeplab serve``: a segmentation service over HTTP, on FastAPI (an ASGI app with request
validation and an OpenAPI schema) served by uvicorn.

Requests wait in a bounded queue (full: 503 with Retry-After, never unbounded memory); a batcher
takes up to ``max_batch`` of them within ``max_wait_ms`` and runs the network on a worker thread,
off the event loop (the Segmenter groups images of one size into one forward pass). The CRF, where
asked, runs as in ``predict``: beside the network where ``Segmenter.overlaps_crf``, after it on CPUs.
Scale-out: ``--workers N`` starts N processes, each with its own model, behind uvicorn's socket; or
any load balancer in front of several servers.

Endpoints: ``POST /v1/segment`` (an image upload; the label PNG, an overlay PNG, or JSON),
``GET /v1/model``, ``/healthz``, ``/readyz``, ``/metrics`` (Prometheus text), ``/`` (a web page),
``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from deeplab.apps.options import segmenter_from_options
from deeplab.apps.viz import classes_and_palette, overlay_with_legend
from deeplab.apps.viz import overlay as viz_overlay
from deeplab.imageio import ImageReadError, decode_image
from deeplab.inference import Prediction, Segmenter
from deeplab.models import NAMED_WEIGHTS, load_model

SETTINGS_ENV = "DEEPLAB_SERVE_SETTINGS"  # how `deeplab serve --workers N` hands its settings to each worker
IMAGE_TYPES = ("image/", "application/octet-stream")


@dataclass
class ServeSettings:
    """What a server runs: the weights, the Segmenter's options, batching and the limits on uploads."""

    weights: str = "voc-mobilenetv2"
    segmenter: dict[str, Any] = field(default_factory=dict)  # segmenter_from_options's keywords
    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_queue: int = 64
    max_upload_mb: float = 20.0
    max_pixels: int = 40_000_000


class Busy(Exception):
    """The queue is full."""


class Batcher:
    """Collects requests into batches of up to ``max_batch`` within ``max_wait_ms`` and runs them."""

    def __init__(self, segmenter: Segmenter, settings: ServeSettings, metrics: Metrics) -> None:
        self.segmenter, self.settings, self.metrics = segmenter, settings, metrics
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=settings.max_queue)
        self.network = ThreadPoolExecutor(1, thread_name_prefix="network")
        self.crf = ThreadPoolExecutor(1, thread_name_prefix="crf")
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Finish what is queued, then stop (a draining shutdown)."""
        await self.queue.join()
        if self.task is not None:
            self.task.cancel()
        self.network.shutdown(wait=True)
        self.crf.shutdown(wait=True)

    async def submit(self, rgb: np.ndarray) -> Prediction:
        future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((rgb, future))
        except asyncio.QueueFull:
            raise Busy from None
        self.metrics.queue_depth.set(self.queue.qsize())
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.settings.max_wait_ms / 1000
            while len(batch) < self.settings.max_batch and (left := deadline - loop.time()) > 0:
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except TimeoutError:
                    break
            self.metrics.queue_depth.set(self.queue.qsize())
            self.metrics.batch_size.observe(len(batch))
            finishing = self._segment(batch)
            if self.segmenter.overlaps_crf:
                loop.create_task(finishing)  # the CRF of this batch beside the network of the next
            else:
                await finishing

    async def _segment(self, batch: list[tuple[np.ndarray, asyncio.Future]]) -> None:
        loop = asyncio.get_running_loop()
        rgbs = [rgb for rgb, _ in batch]
        try:
            if self.segmenter.labels_only(rgbs):  # labels straight from the network: no probabilities
                predictions = await loop.run_in_executor(self.network, self.segmenter.predict_batch, rgbs, False)
            else:
                probs = await loop.run_in_executor(self.network, self.segmenter.probabilities, rgbs)
                predictions = await loop.run_in_executor(self.crf, self.segmenter.refine, rgbs, probs)
            for (_, future), prediction in zip(batch, predictions):
                if not future.done():
                    future.set_result(prediction)
        except Exception as err:  # noqa: BLE001 - every request of the batch gets the error
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
        finally:
            for _ in batch:
                self.queue.task_done()


class Metrics:
    """Prometheus metrics of one server (their own registry: several apps in one process stay apart)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "deeplab_requests", "Segmentation requests by status", ["status"], registry=self.registry
        )
        self.latency = Histogram("deeplab_request_seconds", "Time from upload to answer", registry=self.registry)
        buckets = (1, 2, 4, 8, 16, 32, 64)
        self.batch_size = Histogram(
            "deeplab_batch_size", "Images per network batch", buckets=buckets, registry=self.registry
        )
        self.queue_depth = Gauge("deeplab_queue_depth", "Requests waiting for the network", registry=self.registry)


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI application for ``settings`` (the model is loaded and warmed up at start-up)."""
    settings = settings or ServeSettings()
    metrics = Metrics()
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model = load_model(settings.weights)
        segmenter = segmenter_from_options(model, **settings.segmenter)
        await asyncio.get_running_loop().run_in_executor(None, segmenter, np.zeros((64, 64, 3), np.uint8))
        state["model"], state["segmenter"] = model, segmenter
        state["classes"], state["palette"] = classes_and_palette(model.meta)
        state["batcher"] = batcher = Batcher(segmenter, settings, metrics)
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="deeplab", summary="DeepLab semantic segmentation", lifespan=lifespan)

    def error(status: int, message: str, **headers: str) -> JSONResponse:
        metrics.requests.labels(status=str(status)).inc()
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.post("/v1/segment", summary="Segment an uploaded image")
    async def segment(
        request: Request,
        image: Annotated[UploadFile, File(description="the photo (JPEG, PNG, BMP, TIFF, WebP)")],
        format: Annotated[
            str | None, Query(pattern="^(png|json)$", description="png (labels) or json; by Accept")
        ] = None,
        overlay: Annotated[bool, Query(description="the photo with the labels and a legend, as a PNG")] = False,
    ) -> Response:
        start = time.perf_counter()
        name = image.filename or "upload"
        if image.content_type and not image.content_type.startswith(IMAGE_TYPES):
            return error(415, f"{name}: content type {image.content_type}, not an image")
        limit = int(settings.max_upload_mb * 2**20)
        data = await image.read(limit + 1)
        if len(data) > limit:
            return error(413, f"{name}: larger than the upload limit of {settings.max_upload_mb:g} MB")
        try:
            rgb = await asyncio.get_running_loop().run_in_executor(None, decode_image, data, name, settings.max_pixels)
        except ImageReadError as err:
            return error(413 if "limit" in str(err) or "bomb" in str(err) else 400, str(err))
        try:
            prediction = await state["batcher"].submit(rgb)
        except Busy:
            return error(503, "the server is busy: its queue is full", **{"Retry-After": "1"})
        except ValueError as err:
            return error(500, f"{name}: {err}")
        seconds = time.perf_counter() - start
        metrics.latency.observe(seconds)
        metrics.requests.labels(status="200").inc()
        labels = prediction.labels.astype(np.uint8)
        wants_json = format == "json" or (format is None and "application/json" in request.headers.get("accept", ""))
        if wants_json:  # its overlay has no legend: the answer lists the classes
            shown = viz_overlay(rgb, labels, state["palette"]) if overlay else None
            return JSONResponse(_summary(labels, state["classes"], state["palette"], shown, seconds))
        shown = overlay_with_legend(rgb, labels, state["classes"], state["palette"]) if overlay else None
        png = _png(shown) if shown is not None else _label_png(labels, state["palette"])
        return Response(png, media_type="image/png", headers={"X-Seconds": f"{seconds:.4f}"})

    @app.get("/v1/model", summary="The model: classes, palette, normalisation, source")
    async def model_info() -> dict[str, Any]:
        meta = state["model"].meta
        named = NAMED_WEIGHTS.get(settings.weights)
        return {
            "weights": settings.weights,
            "arch": meta.arch,
            "config": meta.config,
            "classes": state["classes"],
            "palette": [list(c) for c in state["palette"]],
            "mean": list(meta.mean),
            "std": list(meta.std),
            "source": asdict(named) if named else None,
            "segmenter": {k: v for k, v in settings.segmenter.items() if v is not None},
        }

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="The model is loaded and warmed up")
    async def readyz() -> Response:
        if "batcher" not in state:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return (resources.files("deeplab") / "assets" / "serve.html").read_text(encoding="utf-8")

    return app


def app_from_env() -> FastAPI:
    """The app a ``--workers N`` worker builds from the settings its parent put in the environment."""
    return create_app(ServeSettings(**json.loads(os.environ[SETTINGS_ENV])))


def _label_png(labels: np.ndarray, palette: list) -> bytes:
    image = Image.fromarray(labels, mode="P")
    image.putpalette([v for colour in palette for v in colour])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def _summary(labels: np.ndarray, classes: list, palette: list, shown: np.ndarray | None, seconds: float) -> dict:
    """The JSON answer: classes present with pixel counts, the label map (and overlay) as base64 PNGs."""
    counts = np.bincount(labels.ravel(), minlength=len(classes))
    present = [int(c) for c in np.flatnonzero(counts[: len(classes)])]
    answer = {
        "size": [int(labels.shape[0]), int(labels.shape[1])],
        "classes": [
            {"index": c, "name": classes[c], "colour": list(palette[c]), "pixels": int(counts[c])} for c in present
        ],
        "labels_png": base64.b64encode(_label_png(labels, palette)).decode(),
        "seconds": round(seconds, 4),
    }
    if shown is not None:
        answer["overlay_png"] = base64.b64encode(_png(shown)).decode()
    return answer


__all__ = ["Batcher", "ServeSettings", "app_from_env", "create_app"]
