"""``facefit serve`` as a real process: uvicorn answers on a port; bad start-up settings fail in one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_server_answers_over_http(tmp_path: Path, yale_dir: Path) -> None:
    port = _free_port()
    (tmp_path / "keys").write_text("reader-key-123 read the front desk\n")
    env = {**os.environ, "FACEFIT_PROGRESS": "0", "FACEFIT_SERVE_API_KEY": "k",
           "FACEFIT_SERVE_KEYS": str(tmp_path / "keys")}
    proc = subprocess.Popen([sys.executable, "-m", "facefit.cli.app", "serve", "--gallery", str(tmp_path / "g.sqlite"),
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.5)
        head = {"Authorization": "Bearer k"}
        files = {"image_a": ("a.png", (yale_dir / "subject04/04_normal.png").read_bytes()),
                 "image_b": ("b.png", (yale_dir / "subject04/04_sleepy.png").read_bytes())}
        assert httpx.post(f"{base}/verify", files=files, timeout=60).status_code == 401  # the key came from the env
        r = httpx.post(f"{base}/verify", files=files, headers=head, timeout=60)
        assert r.status_code == 200 and r.json()["same"] is True
        assert httpx.get(f"{base}/model", timeout=10).status_code == 401
        # a read key verifies but may not delete; the single key is an admin key (the person is unknown: 404)
        reader = {"Authorization": "Bearer reader-key-123"}
        assert httpx.post(f"{base}/verify", files=files, headers=reader, timeout=60).json()["same"] is True
        assert httpx.delete(f"{base}/persons/x", headers=reader, timeout=10).status_code == 403
        assert httpx.delete(f"{base}/persons/x", headers=head, timeout=10).status_code == 404
        assert httpx.get(f"{base}/model", headers=head, timeout=10).json()["id"]
        assert "securitySchemes" in httpx.get(f"{base}/openapi.json", timeout=10).json()["components"]
        assert httpx.get(f"{base}/", timeout=10).headers["content-type"].startswith("text/html")
        # The key is checked before the body is read: an anonymous bad body is a 401, not a parse error.
        bad = httpx.post(f"{base}/identify", content=b"--x\r\n", timeout=10,
                         headers={"content-type": "multipart/form-data"})
        assert bad.status_code == 401 and bad.headers["content-type"] == "application/json"
        with httpx.Client(base_url=base, headers=head, timeout=60) as keep_alive:  # one connection throughout
            photo = {"images": ("a.png", (yale_dir / "subject04/04_normal.png").read_bytes())}
            odd = keep_alive.post("/persons/x/faces", params={"face": "\u00b2"}, files=photo)
            assert odd.status_code == 422 and odd.json()["detail"][0]["loc"] == ["query", "face"]
            assert keep_alive.get("/persons").json() == []  # the connection survived the bad request
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "facefit serve on http://127.0.0.1" in out


@pytest.mark.parametrize("args, message", [
    (["--model", "no-such-model"], "no-such-model"),
    (["--detector", "mmod"], "--detector"),
    (["--threshold", "-1"], "--threshold"),
    (["--keys", "/no/such/keys-file"], "keys: /no/such/keys-file: cannot read the keys file"),
])
def test_bad_start_up_settings_fail_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "facefit.cli.app", "serve", "--gallery", str(tmp_path / "g.sqlite"),
                           *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "FACEFIT_PROGRESS": "0"})
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("facefit: error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
