"""Keys with roles (read < enrol < admin) and the REST additions the web page needs, on real faces (Yale)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from facefit.serve.app import create_app
from facefit.serve.keys import KeysError, Role, parse_keys
from facefit.serve.settings import ServeSettings

KEYS = {"read": "r-key-0123456789", "enrol": "e-key-0123456789", "admin": "a-key-0123456789"}


def head(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[role]}"}


def photo(yale_dir: Path, name: str) -> tuple[str, bytes]:
    return Path(name).name, (yale_dir / name).read_bytes()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, yale_dir: Path):
    """One server for the module: a read, an enrol and an admin key, and a legacy single key (admin)."""
    root = tmp_path_factory.mktemp("roles")
    keys = root / "keys.txt"
    keys.write_text("# key role name\n\n" + "".join(f"{k} {role} the {role} app\n" for role, k in KEYS.items()))
    settings = ServeSettings(gallery=str(root / "g.sqlite"), keys=str(keys), api_key="legacy-key-0123")
    with TestClient(create_app(settings)) as c:
        for name, files in (("alice", ["subject01/01_normal.png", "subject01/01_sad.png"]),
                            ("bob", ["subject02/02_normal.png"]), ("AC/DC", ["subject03/03_normal.png"])):
            r = c.post(f"/persons/{name.replace('/', '%2F')}/faces", headers=head("enrol"),
                       files=[("images", photo(yale_dir, f)) for f in files])
            assert r.status_code == 201, r.text
        yield c


def test_each_role_may_do_its_part_and_no_more(client: TestClient, yale_dir: Path) -> None:
    probe = {"image": photo(yale_dir, "subject02/02_happy.png")}
    assert client.post("/identify", files=probe).status_code == 401  # no key
    assert client.post("/identify", files=probe, headers={"Authorization": "Bearer nope-nope-nope"}).status_code == 401
    r = client.post("/identify", files=probe, headers=head("read"))
    assert r.status_code == 200 and r.json()["faces"][0]["name"] == "bob"
    assert client.get("/persons", headers=head("read")).status_code == 200
    # read may not enrol; enrol may not delete or rename; the 403 names the role needed and the key's holder
    new = [("images", photo(yale_dir, "subject04/04_normal.png"))]
    denied = client.post("/persons/carol/faces", files=new, headers=head("read"))
    assert denied.status_code == 403 and denied.json()["detail"] == (
        "this needs a key with the enrol role; the key of 'the read app' has the read role")
    for role in ("read", "enrol"):
        assert client.delete("/persons/bob", headers=head(role)).status_code == 403
        assert client.patch("/persons/bob", json={"name": "rob"}, headers=head(role)).status_code == 403
        assert client.delete("/persons/bob/faces/1", headers=head(role)).status_code == 403
    assert client.get("/persons/bob", headers=head("read")).status_code == 200  # nothing was removed
    # the role is checked before the body is read: a body that does not parse is still a 403
    junk = {**head("read"), "content-type": "multipart/form-data; boundary=x"}
    assert client.post("/persons/carol/faces", content=b"--x\r\nnot multipart", headers=junk).status_code == 403
    assert client.post("/persons/carol/faces", content=b"--x\r\nnot multipart",
                       headers={**junk, **head("enrol")}).status_code in (400, 422)
    # the single FACEFIT_SERVE_API_KEY stays an admin key
    legacy = {"Authorization": "Bearer legacy-key-0123"}
    assert client.post("/persons/carol/faces", files=new, headers=legacy).status_code == 201
    assert client.delete("/persons/carol", headers=head("admin")).json() == {"person": "carol", "removed_faces": 1}


def test_the_page_and_the_docs_load_without_a_key(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'data-testid="key-input"' in page.text and "script-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/ui/app.js", "/ui/app.css"):
        assert client.get(asset).status_code == 200, asset
    assert client.get("/ui/no-such.js").status_code == 404
    assert "bearer" in client.get("/openapi.json").json()["components"]["securitySchemes"]


def test_persons_page_through_and_search(client: TestClient) -> None:
    def names(url: str) -> tuple[list[str], str]:
        r = client.get(url, headers=head("read"))
        assert r.status_code == 200, r.text
        return [p["name"] for p in r.json()], r.headers["x-total-count"]

    assert names("/persons") == (["AC/DC", "alice", "bob"], "3")
    assert names("/persons?limit=2") == (["AC/DC", "alice"], "3")
    assert names("/persons?limit=2&offset=2") == (["bob"], "3")
    assert names("/persons?q=LI") == (["alice"], "1")
    assert names("/persons?q=zz") == ([], "0")
    for bad in ("limit=0", "limit=1001", "offset=-1", "q=", "page=2"):
        r = client.get(f"/persons?{bad}", headers=head("read"))
        assert r.status_code == 422 and isinstance(r.json()["detail"], list), bad


def test_a_face_crop_is_a_jpeg_of_that_persons_face_only(client: TestClient) -> None:
    from PIL import Image

    alice = client.get("/persons/alice", headers=head("read")).json()["faces"]
    bob = client.get("/persons/bob", headers=head("read")).json()["faces"]
    r = client.get(f"/persons/alice/faces/{alice[0]['id']}/crop", headers=head("read"))
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert "no-store" in r.headers["cache-control"]
    with Image.open(io.BytesIO(r.content)) as im:
        assert im.format == "JPEG" and min(im.size) > 50
    other = client.get(f"/persons/alice/faces/{bob[0]['id']}/crop", headers=head("read"))  # bob's face via alice
    assert other.status_code == 404 and other.json()["detail"] == f"'alice' has no face with id {bob[0]['id']}"
    assert client.get("/persons/nobody/faces/1/crop", headers=head("read")).status_code == 404
    assert client.get("/persons/alice/faces/0/crop", headers=head("read")).status_code == 422


def test_remove_one_face_and_never_another_persons(client: TestClient, yale_dir: Path) -> None:
    alice = [f["id"] for f in client.get("/persons/alice", headers=head("read")).json()["faces"]]
    bob = [f["id"] for f in client.get("/persons/bob", headers=head("read")).json()["faces"]]
    assert client.delete(f"/persons/alice/faces/{bob[0]}", headers=head("admin")).status_code == 404
    assert [f["id"] for f in client.get("/persons/bob", headers=head("read")).json()["faces"]] == bob
    r = client.delete(f"/persons/alice/faces/{alice[1]}", headers=head("admin"))
    assert r.json() == {"person": "alice", "face_id": alice[1], "remaining_faces": 1}
    assert [f["id"] for f in client.get("/persons/alice", headers=head("read")).json()["faces"]] == alice[:1]
    # a name holding '/faces/N', sent encoded, is a person, not a face of "x"
    weird = "x/faces/7"
    assert client.post("/persons/x%2Ffaces%2F7/faces", headers=head("enrol"),
                       files=[("images", photo(yale_dir, "subject05/05_normal.png"))]).status_code == 201
    assert client.get("/persons/x%2Ffaces%2F7", headers=head("read")).json()["name"] == weird
    assert client.delete("/persons/x%2Ffaces%2F7", headers=head("admin")).json()["person"] == weird


def test_rename_keeps_the_faces_and_follows_the_name_rule(client: TestClient, yale_dir: Path) -> None:
    r = client.patch("/persons/AC%2FDC", json={"name": "  AC/DC live  "}, headers=head("admin"))
    assert r.status_code == 200 and r.json() == {"person": "AC/DC", "name": "AC/DC live"}
    probe = {"image": photo(yale_dir, "subject03/03_happy.png")}
    assert client.post("/identify", files=probe, headers=head("read")).json()["faces"][0]["name"] == "AC/DC live"
    taken = client.patch("/persons/AC%2FDC%20live", json={"name": "bob"}, headers=head("admin"))
    assert taken.status_code == 409 and "already a person named 'bob'" in taken.json()["detail"]
    for body in ({"name": "a\u200bb"}, {"name": " "}, {"name": "x", "extra": 1}, {}):
        bad = client.patch("/persons/bob", json=body, headers=head("admin"))
        assert bad.status_code == 422 and isinstance(bad.json()["detail"], list), body
    assert client.patch("/persons/nobody", json={"name": "n"}, headers=head("admin")).status_code == 404


@pytest.mark.parametrize("text, message", [
    ("k-0123456789 read\n", "line 1: expected 'key role name'"),
    ("k-0123456789 root ops\n", "line 1: role 'root' is not one of read, enrol, admin"),
    ("short read ops\n", "line 1: the key is shorter than 8 characters"),
    ("k-0123456789 read a\n# c\nk-0123456789 admin b\n", "line 3: this key is already given to 'a'"),
    ("# nothing\n", "no keys in it"),
])
def test_a_bad_keys_file_is_one_clear_error_without_the_key(tmp_path: Path, text: str, message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(KeysError, match=message):
        parse_keys(text, "keys.txt")
    (tmp_path / "keys.txt").write_text(text)
    with pytest.raises(ValidationError, match=message) as info:
        ServeSettings(no_gallery=True, keys=str(tmp_path / "keys.txt"))
    assert "k-0123456789" not in str(info.value)


def test_keys_file_roles_and_names() -> None:
    keys = parse_keys("a-0123456789  enrol   the HR app  \n", "k")
    assert keys["a-0123456789"].role is Role.enrol and keys["a-0123456789"].name == "the HR app"
    assert Role.read < Role.enrol < Role.admin
