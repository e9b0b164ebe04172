"""The REST API's answers to the fuzz sweep's requests: each bad request is one JSON 4xx, never a 500."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from facefit.serve.app import create_app
from facefit.serve.settings import ServeSettings

NOT_AN_IMAGE = ("x.png", b"x")  # enough where the request is refused before any upload is read


def photo(yale_dir: Path, name: str = "subject01/01_normal.png") -> tuple[str, bytes]:
    return name, (yale_dir / name).read_bytes()


def assert_refused(r, status: int, loc: list[str]) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert [d["loc"] for d in r.json()["detail"]] == [loc]


@pytest.fixture()
def client(tmp_path: Path):
    with TestClient(create_app(ServeSettings(gallery=str(tmp_path / "g.sqlite")))) as c:
        yield c


@pytest.mark.parametrize("face", ["\u00b2", "9" * 5000, "-1", "second"])
def test_a_face_choice_that_is_no_choice_is_a_422_on_face(client: TestClient, yale_dir: Path, face: str) -> None:
    r = client.post("/persons/alice/faces", params={"face": face}, files={"images": photo(yale_dir)})
    assert_refused(r, 422, ["query", "face"])
    assert client.get("/persons").json() == []


def test_errors_escaping_a_route_are_json(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from facefit.errors import UsageError
    from facefit.gallery.store import GalleryError

    app = create_app(ServeSettings(gallery=str(tmp_path / "g.sqlite")))
    def raising(error: Exception):
        def fail() -> None:
            raise error
        return fail

    app.add_api_route("/usage", raising(UsageError("bad option")))
    app.add_api_route("/gallery", raising(GalleryError("cannot answer")))
    app.add_api_route("/bug", raising(RuntimeError("a bug")))
    with TestClient(app) as c, caplog.at_level(logging.ERROR, "facefit.serve"):
        assert (c.get("/usage").status_code, c.get("/usage").json()) == (422, {"detail": "bad option"})
        assert c.get("/gallery").status_code == 409
        bug = c.get("/bug")
        assert bug.status_code == 500 and bug.headers["content-type"] == "application/json"
        assert "a bug" not in bug.text and "log" in bug.json()["detail"]  # no internals in the answer...
        assert any(r.exc_info and "a bug" in str(r.exc_info[1]) for r in caplog.records)  # ...but in the log
        assert c.get("/health").status_code == 200  # and the server goes on


@pytest.mark.parametrize("url", ["/verify?threshold=inf", "/verify?threshold=1e309", "/verify?threshold=nan",
                                 "/identify?threshold=inf", "/identify?threshold=-inf", "/identify?threshold=0"])
def test_thresholds_must_be_finite_and_positive(client: TestClient, url: str) -> None:
    files = {"image_a": NOT_AN_IMAGE, "image_b": NOT_AN_IMAGE} if url.startswith("/verify") else {
        "image": NOT_AN_IMAGE}
    assert_refused(client.post(url, files=files), 422, ["query", "threshold"])


def test_server_thresholds_must_be_finite() -> None:
    from pydantic import ValidationError

    for key in ("threshold", "verify_threshold"):
        with pytest.raises(ValidationError, match="finite"):
            ServeSettings(no_gallery=True, **{key: float("inf")})


@pytest.mark.parametrize("name", ["AC/DC", "a/faces", "faces", "x/y/z"])
def test_names_with_slashes_reach_every_person_route(client: TestClient, yale_dir: Path, name: str) -> None:
    from urllib.parse import quote

    url = f"/persons/{quote(name, safe='')}"
    added = client.post(f"{url}/faces", files={"images": photo(yale_dir)})
    assert added.status_code == 201 and added.json()["person"] == name
    assert [p["name"] for p in client.get("/persons").json()] == [name]
    shown = client.get(url)
    assert shown.status_code == 200 and shown.json()["name"] == name and len(shown.json()["faces"]) == 1
    again = client.post(f"{url}/faces", files={"images": photo(yale_dir)})
    assert again.status_code == 200 and again.json()["duplicates"][0]["enrolled_as"] == name
    assert client.delete(url).json() == {"person": name, "removed_faces": 1}
    assert client.get(url).status_code == 404 and client.delete(url).status_code == 404
    assert client.get("/persons/").status_code == 200  # the list, not a person with an empty name


@pytest.mark.parametrize("raw", ["%20", "a%00b", "a%0A%1Bb", "%ff%fe", "a%C0%AFb"])
def test_names_no_gallery_can_hold_are_a_422_not_a_conflict(client: TestClient, yale_dir: Path, raw: str) -> None:
    # %ff%fe and %C0%AF are not UTF-8: Starlette decodes them to U+FFFD, which would be stored as a name.
    r = client.post(f"/persons/{raw}/faces", files={"images": photo(yale_dir)})
    assert_refused(r, 422, ["path", "name"])
    assert client.get("/persons").json() == []


@pytest.mark.parametrize("raw", ["%20", "a%00b", "a%0A%1Bb"])
def test_looking_up_a_name_that_cannot_exist_is_a_422(client: TestClient, raw: str) -> None:
    assert_refused(client.get(f"/persons/{raw}"), 422, ["path", "name"])
    assert_refused(client.delete(f"/persons/{raw}"), 422, ["path", "name"])


def test_an_emptied_gallery_is_as_empty_as_a_new_one(client: TestClient, yale_dir: Path) -> None:
    probe = {"image": photo(yale_dir, "subject01/01_happy.png")}
    new = client.post("/identify", files=probe)
    assert new.status_code == 409 and "gallery is empty" in new.json()["detail"]
    assert client.post("/persons/alice/faces", files={"images": photo(yale_dir)}).status_code == 201
    assert client.post("/identify", files=probe).json()["faces"][0]["name"] == "alice"
    assert client.delete("/persons/alice").status_code == 200
    emptied = client.post("/identify", files=probe)
    assert (emptied.status_code, emptied.json()) == (new.status_code, new.json())


def test_the_api_key_is_checked_first_and_the_docs_offer_it(tmp_path: Path) -> None:
    settings = ServeSettings(gallery=str(tmp_path / "g.sqlite"), api_key="s3cr3t")
    key = {"Authorization": "Bearer s3cr3t"}
    with TestClient(create_app(settings)) as c:
        for path in ("/model", "/persons", "/persons/x/faces/1/crop", "/no-such-page", "/ui/../model"):
            r = c.get(path)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
            assert "API key" in r.json()["detail"]
        # A body the server cannot parse: refused for the missing key, so it is never parsed.
        bad = c.post("/identify", content=b"--x\r\nnot multipart", headers={"content-type": "multipart/form-data"})
        assert bad.status_code == 401, bad.text
        assert c.get("/health").status_code == 200
        # The API's description is open, so /docs loads and its Authorize button takes the key.
        doc = c.get("/openapi.json").json()
        assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        assert doc["security"] == [{"bearer": []}] and doc["paths"]["/health"]["get"]["security"] == []
        assert c.get("/docs").status_code == 200
        assert c.get("/openapi.json", headers=key).json()["info"]["title"] == "facefit"
        assert c.get("/persons", headers={"Authorization": "Bearer s3cr3"}).status_code == 401


@pytest.mark.parametrize("method, url, files, loc", [
    ("GET", "/persons?x=1", None, ["query", "x"]),
    ("GET", "/health?x=1", None, ["query", "x"]),
    ("GET", "/model?x=1", None, ["query", "x"]),
    ("GET", "/persons/Other?x=1", None, ["query", "x"]),
    ("DELETE", "/persons/Other?x=1", None, ["query", "x"]),
    ("POST", "/persons/Other/faces?x=1", {"images": NOT_AN_IMAGE}, ["query", "x"]),
    ("POST", "/embed?faces=all&faces=largest", {"image": NOT_AN_IMAGE}, ["query", "faces"]),
    ("POST", "/identify?top_k=1&top_k=2", {"image": NOT_AN_IMAGE}, ["query", "top_k"]),
    ("POST", "/verify?threshold=0.5&threshold=0.6", {"image_a": NOT_AN_IMAGE, "image_b": NOT_AN_IMAGE},
     ["query", "threshold"]),
    ("POST", "/verify", [("image_a", NOT_AN_IMAGE), ("image_a", NOT_AN_IMAGE), ("image_b", NOT_AN_IMAGE)],
     ["body", "image_a"]),
    ("POST", "/identify", [("image", NOT_AN_IMAGE), ("image", NOT_AN_IMAGE)], ["body", "image"]),
])
def test_unknown_and_repeated_parameters_are_refused_on_every_route(client: TestClient, method: str, url: str,
                                                                    files, loc: list[str]) -> None:
    assert_refused(client.request(method, url, files=files), 422, loc)


def test_repeats_are_fine_where_a_field_takes_several(client: TestClient, yale_dir: Path) -> None:
    r = client.post("/persons/alice/faces", files=[("images", photo(yale_dir)),
                                                   ("images", photo(yale_dir, "subject01/01_sad.png"))])
    assert r.status_code == 201 and len(r.json()["added"]) == 2
