"""The REST API on real faces (Yale photos): 1:1, 1:N, enrolment, embeddings, bad input, keys, concurrency."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from facefit.serve.app import create_app
from facefit.serve.settings import ServeSettings


def upload(yale_dir: Path, name: str) -> tuple[str, bytes]:
    return name, (yale_dir / name).read_bytes()


@pytest.fixture()
def client(tmp_path: Path):
    with TestClient(create_app(ServeSettings(gallery=str(tmp_path / "g.sqlite")))) as c:
        yield c


def test_verify_matches_the_library_on_the_same_photos(client: TestClient, yale_dir: Path, model) -> None:
    from facefit import detect_and_align
    from facefit.distances import paired_distances

    a, b, c = "subject01/01_normal.png", "subject01/01_happy.png", "subject02/02_happy.png"
    same = client.post("/verify", files={"image_a": upload(yale_dir, a), "image_b": upload(yale_dir, b)})
    diff = client.post("/verify", files={"image_a": upload(yale_dir, a), "image_b": upload(yale_dir, c)})
    assert same.status_code == diff.status_code == 200
    assert same.json()["same"] is True and diff.json()["same"] is False
    assert same.json()["threshold"] == 0.6 and same.json()["metric"] == "euclidean"
    # The reference: the library's own detection, alignment and embedding of the same files.
    chips = [detect_and_align(yale_dir / p, faces="largest")[0].chip for p in (a, b, c)]
    e = model.embed(chips)
    want = paired_distances(e[[0, 0]], e[[1, 2]], "euclidean")
    assert same.json()["distance"] == pytest.approx(float(want[0]), abs=1e-4)
    assert diff.json()["distance"] == pytest.approx(float(want[1]), abs=1e-4)
    strict = client.post("/verify?threshold=0.2", files={"image_a": upload(yale_dir, a),
                                                          "image_b": upload(yale_dir, b)})
    assert strict.json()["same"] is False and strict.json()["threshold_source"] == "the request"


def test_embed_returns_the_models_embedding(client: TestClient, yale_dir: Path, model) -> None:
    from facefit import detect_and_align

    r = client.post("/embed", files={"image": upload(yale_dir, "subject03/03_glasses.png")})
    assert r.status_code == 200
    body = r.json()
    assert body["contract_id"] == model.contract.id and len(body["faces"]) == 1
    want = model.embed([detect_and_align(yale_dir / "subject03/03_glasses.png")[0].chip])[0]
    np.testing.assert_allclose(body["faces"][0]["embedding"], want, atol=1e-5)


def test_enrol_identify_and_forget(client: TestClient, yale_dir: Path) -> None:
    empty = client.post("/identify", files={"image": upload(yale_dir, "subject01/01_surprised.png")})
    assert empty.status_code == 409 and "gallery is empty" in empty.json()["detail"]
    r = client.post("/persons/alice/faces", files=[("images", upload(yale_dir, "subject01/01_normal.png")),
                                                   ("images", upload(yale_dir, "subject01/01_sad.png"))])
    assert r.status_code == 201 and len(r.json()["added"]) == 2
    again = client.post("/persons/alice/faces", files=[("images", upload(yale_dir, "subject01/01_normal.png"))])
    assert again.status_code == 200 and again.json()["duplicates"][0]["enrolled_as"] == "alice"
    assert client.post("/persons/bob/faces",
                       files=[("images", upload(yale_dir, "subject02/02_normal.png"))]).status_code == 201
    assert [(p["name"], p["faces"]) for p in client.get("/persons").json()] == [("alice", 2), ("bob", 1)]
    assert len(client.get("/persons/alice").json()["faces"]) == 2

    known = client.post("/identify", files={"image": upload(yale_dir, "subject01/01_surprised.png")}).json()
    assert known["faces"][0]["name"] == "alice" and known["threshold"] == 0.6
    stranger = client.post("/identify", files={"image": upload(yale_dir, "subject07/07_happy.png")}).json()
    assert stranger["faces"][0]["name"] is None  # open set: not matched to alice or bob
    assert [m["name"] for m in stranger["faces"][0]["matches"]] and stranger["faces"][0]["distance"] > 0.6

    assert client.delete("/persons/alice").json() == {"person": "alice", "removed_faces": 2}
    after = client.post("/identify", files={"image": upload(yale_dir, "subject01/01_surprised.png")}).json()
    assert after["faces"][0]["name"] != "alice"
    assert client.get("/persons/alice").status_code == 404
    assert client.delete("/persons/alice").status_code == 404


def test_enrol_reports_bad_photos_and_refuses_when_none_is_usable(client: TestClient, yale_dir: Path) -> None:
    blank = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank, "PNG")
    mixed = client.post("/persons/carol/faces", files=[("images", upload(yale_dir, "subject05/05_normal.png")),
                                                       ("images", ("broken.jpg", b"\xff\xd8\xff\x00junk")),
                                                       ("images", ("blank.png", blank.getvalue()))])
    assert mixed.status_code == 201
    reasons = {f["source"]: f["reason"] for f in mixed.json()["failures"]}
    assert set(reasons) == {"images[1] (broken.jpg)", "images[2] (blank.png)"}
    assert "no face" in reasons["images[2] (blank.png)"]
    none = client.post("/persons/dave/faces", files=[("images", ("blank.png", blank.getvalue()))])
    assert none.status_code == 422 and not none.json()["added"]
    assert "dave" not in [p["name"] for p in client.get("/persons").json()]


@pytest.mark.parametrize("case", ["corrupt", "empty", "no-face", "unknown-param", "unknown-field", "missing",
                                  "too-large"])
def test_bad_requests_get_one_clear_error(tmp_path: Path, yale_dir: Path, case: str) -> None:
    settings = ServeSettings(gallery=str(tmp_path / "g.sqlite"), max_upload_mb=0.05)
    good = upload(yale_dir, "subject01/01_normal.png")
    files = {"image_a": good, "image_b": upload(yale_dir, "subject01/01_happy.png")}
    url = "/verify"
    if case == "corrupt":
        files["image_b"] = ("b.jpg", b"\xff\xd8\xffnot really")
    elif case == "empty":
        files["image_b"] = ("b.jpg", b"")
    elif case == "no-face":
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (240, 240), (20, 90, 200)).save(buf, "JPEG")
        files["image_b"] = ("sky.jpg", buf.getvalue())
    elif case == "unknown-param":
        url = "/verify?thresold=0.5"
    elif case == "unknown-field":
        files["image_c"] = good
    elif case == "missing":
        del files["image_b"]
    else:
        files["image_b"] = ("big.png", b"\x89PNG" + b"\0" * 60_000)
    with TestClient(create_app(settings)) as c:
        r = c.post(url, files=files)
    expected = {"too-large": 413, "unknown-param": 422, "unknown-field": 422, "missing": 422}.get(case, 422)
    assert r.status_code == expected, r.text
    detail = r.json()["detail"]
    if case in ("corrupt", "empty", "no-face", "too-large"):
        assert isinstance(detail, str) and detail.startswith("image_b (")
    else:
        assert isinstance(detail, list) and all(set(d) == {"loc", "msg"} for d in detail)  # no echo of uploads


def test_oversized_request_bodies_are_refused_while_they_arrive(tmp_path: Path, yale_dir: Path) -> None:
    settings = ServeSettings(gallery=str(tmp_path / "g.sqlite"), max_request_mb=0.2)
    photo = upload(yale_dir, "subject01/01_normal.png")
    with TestClient(create_app(settings)) as c:
        big = c.post("/persons/alice/faces", files=[("images", photo)] * 12)  # ~12 x 60 kB > 0.2 MB
        assert big.status_code == 413 and "larger than 0.2 MB" in big.json()["detail"]

        def chunks():  # no Content-Length: counted as it streams in
            yield b'--b\r\nContent-Disposition: form-data; name="image_a"; filename="a.jpg"\r\n\r\n'
            for _ in range(40):
                yield b"x" * 10_000

        streamed = c.post("/verify", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
        assert streamed.status_code == 413
        assert c.get("/persons").json() == []  # nothing was enrolled
        assert c.post("/persons/alice/faces", files=[("images", photo)]).status_code == 201


def test_api_key_guards_everything_but_health(tmp_path: Path, yale_dir: Path) -> None:
    settings = ServeSettings(gallery=str(tmp_path / "g.sqlite"), api_key="s3cret")
    with TestClient(create_app(settings)) as c:
        assert c.get("/health").status_code == 200
        assert c.get("/model").status_code == 401
        assert c.get("/model", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/persons", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        model = c.get("/model", headers={"Authorization": "Bearer s3cret"}).json()
        assert model["id"] == c.get("/health").json()["model"]
        assert c.get("/health").json()["precision"] == "fp32"  # the tests pin FACEFIT_PRECISION=fp32


def test_read_only_and_gallery_free_servers(tmp_path: Path, yale_dir: Path) -> None:
    photo = {"images": upload(yale_dir, "subject01/01_normal.png")}
    with TestClient(create_app(ServeSettings(gallery=str(tmp_path / "g.sqlite"), allow_enrol=False))) as c:
        assert c.post("/persons/alice/faces", files=photo).status_code == 403
        assert c.delete("/persons/alice").status_code == 403
    with TestClient(create_app(ServeSettings(no_gallery=True))) as c:
        assert c.get("/health").json()["gallery"] is None
        assert c.post("/identify", files={"image": photo["images"]}).status_code == 503
        ok = c.post("/verify", files={"image_a": photo["images"],
                                      "image_b": upload(yale_dir, "subject01/01_wink.png")})
        assert ok.status_code == 200 and ok.json()["same"] is True


def test_concurrent_requests_share_one_gallery_safely(client: TestClient, yale_dir: Path) -> None:
    for k in (1, 2, 3):
        assert client.post(f"/persons/p{k}/faces", files=[
            ("images", upload(yale_dir, f"subject0{k}/0{k}_normal.png"))]).status_code == 201
    probes = [(k, f"subject0{k}/0{k}_{c}.png") for k in (1, 2, 3) for c in ("happy", "sleepy")]

    def ask(item: tuple[int, str]) -> tuple[int, str | None]:
        r = client.post("/identify", files={"image": upload(yale_dir, item[1])})
        assert r.status_code == 200, r.text
        return item[0], r.json()["faces"][0]["name"]

    def enrol(k: int) -> int:
        return client.post(f"/persons/extra{k}/faces", files=[
            ("images", upload(yale_dir, f"subject1{k}/1{k}_normal.png"))]).status_code

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(ask, probes * 2))
        codes = list(pool.map(enrol, range(4)))
    assert all(name == f"p{k}" for k, name in answers)
    assert codes == [201] * 4
    assert len(client.get("/persons").json()) == 7


def test_a_gallery_of_another_model_is_refused_at_start(tmp_path: Path, yale_dir: Path) -> None:
    from dataclasses import replace

    import facefit
    from facefit.errors import FacefitError
    from facefit.serve.state import load_state

    with TestClient(create_app(ServeSettings(gallery=str(tmp_path / "g.sqlite")))) as c:
        c.post("/persons/alice/faces", files=[("images", upload(yale_dir, "subject01/01_normal.png"))])
    other = facefit.create_model("dlib-resnet")
    other.contract = replace(other.contract, flip_average=True)  # other embeddings, another contract id
    facefit.save_model(other, tmp_path / "flip-model")
    with pytest.raises(FacefitError, match="holds embeddings of"):
        load_state(ServeSettings(gallery=str(tmp_path / "g.sqlite"), model=str(tmp_path / "flip-model")))


def test_a_reembed_under_a_running_server_is_a_409_not_a_wrong_answer(tmp_path: Path, yale_dir: Path) -> None:
    from dataclasses import replace

    import facefit
    from facefit.gallery.gallery import Gallery

    other = facefit.create_model("dlib-resnet")
    other.contract = replace(other.contract, flip_average=True)
    with TestClient(create_app(ServeSettings(gallery=str(tmp_path / "g.sqlite")))) as c:
        c.post("/persons/alice/faces", files=[("images", upload(yale_dir, "subject01/01_normal.png"))])
        with Gallery.open(tmp_path / "g.sqlite") as g:  # another process fine-tuned and re-embedded meanwhile
            assert g.reembed(other) == 1
        r = c.post("/identify", files={"image": upload(yale_dir, "subject01/01_happy.png")})
        assert r.status_code == 409 and "holds embeddings of" in r.json()["detail"]
