"""Issue 15.2, 15.3, 15.8 through the app itself: a blank API key, server paths in answers, an honest /health.

The limits that need a real ``facefit serve`` process (threads, memory, timeouts, connections) are in
``test_server_limits.py``.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient
from pydantic import ValidationError

from facefit.serve.app import create_app
from facefit.serve.settings import ServeSettings


def _photo(yale_dir: Path, name: str) -> tuple[str, bytes]:
    return name.rsplit("/", 1)[-1], (yale_dir / name).read_bytes()


# -- 15.2: a blank API key ----------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["", "   ", "\t"])
def test_blank_api_key_is_refused_by_the_settings(key: str) -> None:
    with pytest.raises(ValidationError, match="API key is empty or blank"):
        ServeSettings(api_key=key)


@pytest.mark.parametrize("key", ["", "  "])
def test_serve_refuses_a_blank_key_from_the_environment_before_starting(tmp_path: Path, key: str) -> None:
    env = {**os.environ, "FACEFIT_PROGRESS": "0", "FACEFIT_SERVE_API_KEY": key}
    try:
        proc = subprocess.run([sys.executable, "-m", "facefit.cli.app", "serve", "--gallery",
                               str(tmp_path / "g.sqlite"), "--port", "1"],
                              capture_output=True, text=True, timeout=90, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("facefit serve started with a blank API key")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("facefit: error:")]
    assert len(errors) == 1 and "API key is empty or blank" in errors[0], proc.stderr


def test_a_key_is_still_required_and_accepted(tmp_path: Path) -> None:
    with TestClient(create_app(ServeSettings(gallery=str(tmp_path / "g.sqlite"), api_key=" k3y "))) as c:
        assert c.get("/persons", headers={"Authorization": "Bearer "}).status_code == 401
        assert c.get("/persons").status_code == 401
        assert c.get("/persons", headers={"Authorization": "Bearer k3y"}).status_code == 200


# -- 15.3: no server paths in answers --------------------------------------------------------------------
def test_answers_do_not_reveal_the_gallery_path(tmp_path: Path, yale_dir: Path) -> None:
    secret = tmp_path / "srv-secret-dir"
    gallery = secret / "faces.sqlite"
    with TestClient(create_app(ServeSettings(gallery=str(gallery), api_key="k"))) as c:
        head = {"Authorization": "Bearer k"}
        answers = [c.get("/health"), c.get("/health", headers=head), c.get("/persons/nobody", headers=head),
                   c.delete("/persons/nobody", headers=head), c.get("/persons/a%2Fb", headers=head),
                   c.post("/identify", headers=head, files={"image": _photo(yale_dir, "subject01/01_normal.png")})]
        assert [r.status_code for r in answers] == [200, 200, 404, 404, 404, 409]
        for r in answers:
            assert "srv-secret-dir" not in r.text and "faces.sqlite" not in r.text, r.text
        assert answers[0].json()["gallery"] == "sqlite"
        assert answers[2].json()["detail"] == "no person named 'nobody' in the gallery"


# -- 15.8: /health checks what it reports --------------------------------------------------------------
def _enrolled(tmp_path: Path, yale_dir: Path) -> Path:
    path = tmp_path / "g.sqlite"
    with TestClient(create_app(ServeSettings(gallery=str(path)))) as c:
        for who in ("subject01", "subject02"):
            r = c.post(f"/persons/{who}/faces", files=[("images", _photo(yale_dir, f"{who}/{who[-2:]}_normal.png"))])
            assert r.status_code == 201
    for cache in tmp_path.glob("*.index.npz"):
        cache.unlink()  # the damage below must be met by reading the database, as after a restart
    return path


def test_health_fails_when_stored_faces_are_damaged(tmp_path: Path, yale_dir: Path) -> None:
    path = _enrolled(tmp_path, yale_dir)
    with sqlite3.connect(path) as db:
        emb = db.execute("SELECT embedding FROM facefit_faces ORDER BY id LIMIT 1").fetchone()[0]
        page = db.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(path.read_bytes())
    at = data.find(emb)
    assert at > 0
    start = at // page * page
    data[start: start + 16] = b"\xff" * 16  # the page header of the table page holding the embedding
    path.write_bytes(bytes(data))
    with TestClient(create_app(ServeSettings(gallery=str(path))), raise_server_exceptions=False) as c:
        identify = c.post("/identify", files={"image": _photo(yale_dir, "subject01/01_happy.png")})
        assert identify.status_code == 500
        health = c.get("/health")
        assert health.status_code == 503, health.text
        body = health.json()
        assert body["status"] == "error" and "malformed" in body["detail"]
        assert str(tmp_path) not in health.text


def test_health_fails_when_the_stored_model_is_damaged(tmp_path: Path, yale_dir: Path) -> None:
    path = _enrolled(tmp_path, yale_dir)
    with TestClient(create_app(ServeSettings(gallery=str(path))), raise_server_exceptions=False) as c:
        assert c.get("/health").json()["status"] == "ok"
        with sqlite3.connect(path) as db:  # damaged behind the server's back
            db.execute("UPDATE facefit_meta SET value = '{\"id\": ' WHERE key = 'contract'")
        assert c.post("/identify", files={"image": _photo(yale_dir, "subject01/01_happy.png")}).status_code == 500
        health = c.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "error", health.text


def test_health_reports_an_endpoint_that_keeps_failing(tmp_path: Path, yale_dir: Path, monkeypatch) -> None:
    path = _enrolled(tmp_path, yale_dir)
    with TestClient(create_app(ServeSettings(gallery=str(path))), raise_server_exceptions=False) as c:
        from facefit.gallery.sqlite import SQLiteStore

        def broken(self, person=None):  # a damage the probe does not read
            raise sqlite3.DatabaseError("database disk image is malformed")

        monkeypatch.setattr(SQLiteStore, "faces", broken)
        assert c.get("/persons/subject01").status_code == 500
        assert c.get("/health").status_code == 503
        monkeypatch.undo()
        assert c.get("/persons/subject01").status_code == 200  # it answers again: so does /health
        assert c.get("/health").json()["status"] == "ok"


def test_health_is_ok_on_a_sound_gallery(tmp_path: Path, yale_dir: Path) -> None:
    path = _enrolled(tmp_path, yale_dir)
    with TestClient(create_app(ServeSettings(gallery=str(path)))) as c:
        body = c.get("/health").json()
        assert body["status"] == "ok" and (body["persons"], body["faces"]) == (2, 2) and body["detail"] is None
        assert np.isfinite(c.post("/identify", files={"image": _photo(yale_dir, "subject01/01_happy.png")})
                           .json()["faces"][0]["distance"])


def test_health_answers_while_every_worker_thread_waits_on_uploads(tmp_path: Path, yale_dir: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Starlette runs sync routes on at most 40 threads; uploads waiting for a decode slot can hold them all."""
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import contextmanager

    from facefit.serve.state import ServeState

    release, waiting = threading.Event(), threading.Semaphore(0)
    real_slot = ServeState.decode_slot

    @contextmanager
    def stuck_slot(self: ServeState):  # every slot busy until released
        waiting.release()
        release.wait(60)
        with real_slot(self) as aligner:
            yield aligner

    monkeypatch.setattr(ServeState, "decode_slot", stuck_slot)
    photo = _photo(yale_dir, "subject01/01_normal.png")
    with TestClient(create_app(ServeSettings(gallery=str(tmp_path / "g.sqlite")))) as c, \
            ThreadPoolExecutor(46) as pool:  # one thread over, for the /health call
        try:
            pending = [pool.submit(c.post, "/embed", files={"image": photo}) for _ in range(45)]
            for _ in range(40):  # the whole thread pool is taken
                assert waiting.acquire(timeout=60)
            answered = pool.submit(c.get, "/health").result(timeout=30)
            assert answered.status_code == 200 and answered.json()["status"] == "ok"
        finally:
            release.set()
        assert all(p.result(timeout=120).status_code == 200 for p in pending)
