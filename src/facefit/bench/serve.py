"""REST API latency: ``/verify`` and ``/identify`` over real HTTP, with concurrent clients.

A gallery of real persons is enrolled in a temporary folder, the app runs under
uvicorn on a free local port in this process, and client threads send each
person's held-back photo (never enrolled): to ``/identify``, and to ``/verify``
against one of their enrolled photos. Clients and server share the machine, as
they would on a one-box deployment.
"""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from facefit.errors import FacefitError, UsageError


@dataclass
class ServeBenchRow:
    endpoint: str
    concurrency: int
    requests: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    correct: float  # identify: right name; verify: same person accepted

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else float("nan")

    def as_dict(self) -> dict:
        return {**asdict(self), "per_s": self.per_s}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BackgroundServer:
    """uvicorn on a background thread, started and stopped around the measurements (and the page's tests)."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="facefit-bench-server", daemon=True)

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise FacefitError("the benchmark server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def bench_serve(faces_dir: Path, workdir: Path, *, persons: int, requests: int, concurrency: list[int],
                model_name: str = "dlib-resnet", on_row=None) -> list[ServeBenchRow]:
    """Enrol ``persons`` in ``workdir``, serve them, and time ``requests`` calls per endpoint and concurrency."""
    import httpx

    from facefit.bench.stream import pick_persons
    from facefit.gallery.gallery import Gallery
    from facefit.models import create_model
    from facefit.serve.app import create_app
    from facefit.serve.settings import ServeSettings
    from facefit.serve.state import load_state

    people = pick_persons(faces_dir, persons)
    model = create_model(model_name)
    location = str(workdir / "gallery.sqlite")
    with Gallery.open(location) as gallery:
        for p in people:
            if not gallery.add(p.name, p.enrol_photos[:2], model).added:
                raise UsageError(f"could not enrol {p.name} from {faces_dir / p.name}: no usable photo")
    probes = [(p.name, p.video_photo.read_bytes(), p.enrol_photos[0].read_bytes()) for p in people]
    rows: list[ServeBenchRow] = []
    state = load_state(ServeSettings(gallery=location, model=model_name))
    with BackgroundServer(create_app(state=state)) as server, \
            httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=120) as client:
        def call(endpoint: str, k: int) -> tuple[float, bool]:
            name, probe, enrolled = probes[k % len(probes)]
            files = ({"image": ("probe.jpg", probe)} if endpoint == "identify"
                     else {"image_a": ("probe.jpg", probe), "image_b": ("enrolled.jpg", enrolled)})
            t = time.perf_counter()
            r = client.post(f"/{endpoint}", files=files)
            ms = (time.perf_counter() - t) * 1000
            if r.status_code != 200:
                return ms, False
            body = r.json()
            ok = (bool(body["faces"]) and body["faces"][0]["name"] == name) if endpoint == "identify" else body["same"]
            return ms, bool(ok)

        for endpoint in ("verify", "identify"):
            call(endpoint, 0)  # warm-up: the first request of each thread loads its aligner
            for c in concurrency:
                with ThreadPoolExecutor(c) as pool:
                    list(pool.map(call, [endpoint] * c, range(c)))  # warm every worker's aligner
                    t0 = time.perf_counter()
                    results = list(pool.map(call, [endpoint] * requests, range(requests)))
                    seconds = time.perf_counter() - t0
                lat = np.array([ms for ms, _ in results])
                row = ServeBenchRow(endpoint, c, requests, seconds, float(np.percentile(lat, 50)),
                                    float(np.percentile(lat, 95)), float(np.percentile(lat, 99)),
                                    float(np.mean([ok for _, ok in results])))
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    return rows
