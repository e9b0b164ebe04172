"""The web page at ``/`` in a real headless Chromium (selenium), on real faces (Yale), against a real server.

Skipped when Chromium or its driver is not installed (``apt-get install chromium chromium-driver``; CI's
``.ci/run`` tries to install them). One browser and one server for the module; its Live view watches
Chromium's fake camera, a ``.y4m`` video made from Yale photos (in a temporary folder, never kept).

``FACEFIT_PAGE_SCREENSHOT=out/identify.png`` saves a screenshot of the Identify view (a Yale photo with its
box and name) there; it shows a real face, so it is not committed (the data's licence forbids it).
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait as _WebDriverWait  # noqa: E402


def WebDriverWait(driver: object, timeout: float) -> _WebDriverWait:  # selenium's name
    """A wait that retries when the page re-rendered an element under it (a list refreshed mid-read)."""
    return _WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,))

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
DRIVER = shutil.which("chromedriver")
if CHROMIUM is None or DRIVER is None:  # a skip, in CI too: the browser is a best-effort install there
    pytest.skip("Chromium or chromedriver is not installed (apt-get install chromium chromium-driver)",
                allow_module_level=True)

KEYS = {"read": "page-read-key-01", "admin": "page-admin-key-01"}
LIVE_PERSON = "subject09"  # the fake camera shows this person, enrolled from another photo


@dataclass
class Site:
    url: str
    photos: Path  # Yale's folder
    scratch: Path

    def api(self, method: str, path: str, **kw) -> httpx.Response:
        return httpx.request(method, self.url + path, headers={"Authorization": f"Bearer {KEYS['admin']}"},
                             timeout=60, **kw)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, yale_dir: Path) -> Iterator[Site]:
    from facefit.bench.serve import BackgroundServer
    from facefit.serve.app import create_app
    from facefit.serve.settings import ServeSettings

    root = tmp_path_factory.mktemp("page")
    (root / "keys.txt").write_text("".join(f"{k} {role} {role} tester\n" for role, k in KEYS.items()))
    settings = ServeSettings(gallery=str(root / "g.sqlite"), keys=str(root / "keys.txt"), max_upload_mb=1)
    with BackgroundServer(create_app(settings)) as server:
        yield Site(f"http://127.0.0.1:{server.port}/", yale_dir, root)


@pytest.fixture(scope="module")
def browser(site: Site) -> Iterator[webdriver.Chrome]:
    from facefit.bench.synthetic_video import Actor, build_video

    video = site.scratch / "camera.y4m"  # real faces: in the temporary folder only
    build_video(video, [Actor(LIVE_PERSON, site.photos / f"{LIVE_PERSON}/09_happy.png")], frames=50, fps=10,
                noise=0)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1000",
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-video-capture={video}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


# -- helpers -----------------------------------------------------------------------------------------

def el(driver: webdriver.Chrome, testid: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f'[data-testid="{testid}"]')


def open_page(driver: webdriver.Chrome, site: Site, key: str | None, view: str = "identify") -> None:
    driver.get("about:blank")  # a fresh page: only the hash differs from the last, which would not reload it
    driver.get(site.url + f"#{view}")
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    box = el(driver, "key-input")
    box.clear()
    if key is not None:
        box.send_keys(key)
    el(driver, f"tab-{view}").click()  # also moves the focus off the key: its change event fires


def wait_text(driver: webdriver.Chrome, testid: str, want: str, timeout: float = 60) -> str:
    """The element's text once it holds ``want``; a timeout names what it held instead."""
    try:
        WebDriverWait(driver, timeout).until(lambda d: want in el(d, testid).text)
    except TimeoutException:
        pytest.fail(f"{testid} never showed {want!r}; it shows {el(driver, testid).text!r}")
    return el(driver, testid).text


def pick(driver: webdriver.Chrome, testid: str, *files: Path) -> None:
    el(driver, testid).send_keys("\n".join(str(f) for f in files))


def person_row(driver: webdriver.Chrome, name: str) -> WebElement | None:
    for _ in range(20):  # the gallery list re-renders after each change; read it again if it did mid-read
        try:
            rows = driver.find_elements(By.CSS_SELECTOR, '[data-testid="person-row"]')
            return next((r for r in rows if r.get_attribute("data-name") == name), None)
        except StaleElementReferenceException:
            continue
    raise AssertionError("the gallery list kept re-rendering")


def answer_dialog(driver: webdriver.Chrome, accept: bool, text: str | None = None) -> str:
    alert = WebDriverWait(driver, 10).until(lambda d: d.switch_to.alert)
    message = alert.text
    if text is not None:
        alert.send_keys(text)
    alert.accept() if accept else alert.dismiss()
    return message


# -- the bar: enrol, identify, verify and delete through the page ------------------------------------

def test_the_page_enrols_identifies_verifies_and_deletes(browser: webdriver.Chrome, site: Site) -> None:
    y = site.photos
    open_page(browser, site, KEYS["admin"], "enrol")
    el(browser, "enrol-name").send_keys("Alice Example")
    blank = site.scratch / "wall.png"
    from PIL import Image

    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    pick(browser, "enrol-file", y / "subject01/01_normal.png", y / "subject01/01_sad.png", blank)
    el(browser, "enrol-submit").click()
    report = wait_text(browser, "enrol-result", "2 face(s) added")
    assert "used: images[0] (01_normal.png)" in report and "used: images[1] (01_sad.png)" in report
    assert "failed: images[2] (wall.png)" in report and "no face" in report  # the API's reason, by the photo
    assert [p["name"] for p in site.api("GET", "persons").json()] == ["Alice Example"]
    wait_text(browser, "status", "1 person, 2 faces")

    el(browser, "tab-identify").click()
    pick(browser, "identify-file", y / "subject01/01_surprised.png")
    el(browser, "identify-submit").click()
    known = wait_text(browser, "identify-result", "Alice Example")
    assert "distance" in known and "threshold 0.6" in known
    canvas = el(browser, "identify-canvas")
    assert int(canvas.get_attribute("width")) == 320  # the photo is drawn, with its box
    if os.environ.get("FACEFIT_PAGE_SCREENSHOT"):
        Path(os.environ["FACEFIT_PAGE_SCREENSHOT"]).parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(os.environ["FACEFIT_PAGE_SCREENSHOT"])
    pick(browser, "identify-file", y / "subject07/07_happy.png")
    el(browser, "identify-submit").click()
    stranger = wait_text(browser, "identify-result", "unknown")
    assert "Alice Example" in stranger  # only among the closest matches, not as the answer
    assert el(browser, "identify-result").find_element(By.CSS_SELECTOR, "li strong").text == "unknown"

    el(browser, "tab-verify").click()
    pick(browser, "verify-file-a", y / "subject04/04_normal.png")
    pick(browser, "verify-file-b", y / "subject04/04_sleepy.png")
    el(browser, "verify-submit").click()
    same = wait_text(browser, "verify-result", "same person")
    assert "not the same" not in same and "threshold 0.6" in same
    pick(browser, "verify-file-b", y / "subject05/05_sleepy.png")
    el(browser, "verify-submit").click()
    wait_text(browser, "verify-result", "not the same person")

    el(browser, "tab-gallery").click()
    WebDriverWait(browser, 30).until(lambda d: person_row(d, "Alice Example") is not None)
    person_row(browser, "Alice Example").find_element(By.CSS_SELECTOR, '[data-testid="person-delete"]').click()
    assert "Remove Alice Example" in answer_dialog(browser, accept=False)  # asked first; cancelled: kept
    assert person_row(browser, "Alice Example") is not None
    person_row(browser, "Alice Example").find_element(By.CSS_SELECTOR, '[data-testid="person-delete"]').click()
    answer_dialog(browser, accept=True)
    WebDriverWait(browser, 30).until(lambda d: person_row(d, "Alice Example") is None)
    assert site.api("GET", "persons").json() == []


# -- bad input: the API's own words, next to what caused them ----------------------------------------

def test_bad_keys_and_bad_photos_show_the_apis_message(browser: webdriver.Chrome, site: Site) -> None:
    y = site.photos
    assert site.api("POST", "persons/Bob/faces",
                    files=[("images", ("b.png", (y / "subject02/02_normal.png").read_bytes()))]).status_code == 201
    open_page(browser, site, "not-a-real-key")
    pick(browser, "identify-file", y / "subject02/02_happy.png")
    el(browser, "identify-submit").click()
    wait_text(browser, "identify-error", "missing or wrong API key (Authorization: Bearer <key>)")
    assert "missing or wrong API key" in el(browser, "key-error").text

    not_image = site.scratch / "notes.txt"
    not_image.write_text("not a photo")
    big = site.scratch / "big.png"
    big.write_bytes(b"\x89PNG" + b"\0" * 1_200_000)
    sky = site.scratch / "sky.jpg"
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (240, 240), (20, 90, 200)).save(buf, "JPEG")
    sky.write_bytes(buf.getvalue())
    open_page(browser, site, KEYS["read"])
    for file, want in ((not_image, "image (notes.txt): "), (big, "image (big.png): larger than the 1 MB upload limit")):
        pick(browser, "identify-file", file)
        el(browser, "identify-submit").click()
        message = wait_text(browser, "identify-error", want)
        assert "\n" not in message
    el(browser, "tab-verify").click()
    pick(browser, "verify-file-a", y / "subject02/02_happy.png")
    pick(browser, "verify-file-b", sky)
    el(browser, "verify-submit").click()
    wait_text(browser, "verify-error", "image_b (sky.jpg): no face found")

    # the read key may not enrol: the API's 403, on the page
    el(browser, "tab-enrol").click()
    el(browser, "enrol-name").send_keys("Carol")
    pick(browser, "enrol-file", y / "subject03/03_normal.png")
    el(browser, "enrol-submit").click()
    wait_text(browser, "enrol-error", "this needs a key with the enrol role; the key of 'read tester' has the "
                                      "read role")
    # a name the gallery cannot store is refused before upload, by the gallery's rule
    name = el(browser, "enrol-name")
    name.clear()
    name.send_keys("Car\u200bol")
    el(browser, "enrol-submit").click()
    wait_text(browser, "enrol-error", "it holds U+200B")
    assert [p["name"] for p in site.api("GET", "persons").json()] == ["Bob"]

    # the read key sees the gallery but cannot remove anyone
    el(browser, "tab-gallery").click()
    WebDriverWait(browser, 30).until(lambda d: person_row(d, "Bob") is not None)
    person_row(browser, "Bob").find_element(By.CSS_SELECTOR, '[data-testid="person-delete"]').click()
    answer_dialog(browser, accept=True)
    row = person_row(browser, "Bob")
    WebDriverWait(browser, 30).until(lambda d: "admin role" in row.find_element(
        By.CSS_SELECTOR, '[data-testid="person-error"]').text)
    assert site.api("DELETE", "persons/Bob").status_code == 200


# -- the gallery: crops, rename, one face, pages -----------------------------------------------------

@pytest.mark.slow
def test_the_gallery_shows_crops_renames_removes_a_face_and_pages(browser: webdriver.Chrome, site: Site) -> None:
    y = site.photos
    photos = [("images", (f"{c}.png", (y / f"subject06/06_{c}.png").read_bytes())) for c in ("normal", "happy")]
    assert site.api("POST", "persons/Dee%2FDee/faces", files=photos).status_code == 201
    for k in range(21):  # a second page: the page shows 20 persons at a time
        s, condition = k % 15 + 1, "wink" if k < 15 else "glasses"
        assert site.api("POST", f"persons/filler{k:02d}/faces", files=[("images", (
            "f.png", (y / f"subject{s:02d}/{s:02d}_{condition}.png").read_bytes()))]).status_code == 201
    # a photo of two people: refused with the API's reason unless the page is told which face to take
    from PIL import Image

    pair = Image.new("L", (640, 243))
    for k, s in enumerate(("07", "08")):
        with Image.open(y / f"subject{s}/{s}_normal.png") as im:
            pair.paste(im.convert("L"), (320 * k, 0))
    pair.save(site.scratch / "pair.png")
    open_page(browser, site, KEYS["admin"], "enrol")
    el(browser, "enrol-name").send_keys("Pair")
    pick(browser, "enrol-file", site.scratch / "pair.png")
    el(browser, "enrol-submit").click()
    wait_text(browser, "enrol-result", "failed: images[0] (pair.png): 2 faces found")
    assert "nothing added" in el(browser, "enrol-result").text
    el(browser, "enrol-face").send_keys("use the largest face")
    el(browser, "enrol-submit").click()
    wait_text(browser, "enrol-result", "1 face(s) added")

    open_page(browser, site, KEYS["admin"], "gallery")
    wait_text(browser, "gallery-info", "1-20 of 23")
    el(browser, "gallery-next").click()
    wait_text(browser, "gallery-info", "21-23 of 23")
    search = el(browser, "gallery-search")
    search.send_keys("dee")
    wait_text(browser, "gallery-info", "1-1 of 1")
    row = person_row(browser, "Dee/Dee")
    row.find_element(By.CSS_SELECTOR, '[data-testid="person-faces"]').click()
    WebDriverWait(browser, 30).until(lambda d: len([i for i in row.find_elements(By.CSS_SELECTOR, "img")
                                                    if d.execute_script("return arguments[0].naturalWidth", i)]) == 2)
    row.find_elements(By.CSS_SELECTOR, '[data-testid="face-delete"]')[0].click()
    answer_dialog(browser, accept=True)
    WebDriverWait(browser, 30).until(lambda d: len(person_row(d, "Dee/Dee").find_elements(
        By.CSS_SELECTOR, '[data-testid="face-crop"]')) == 1)
    assert len(site.api("GET", "persons/Dee%2FDee").json()["faces"]) == 1
    person_row(browser, "Dee/Dee").find_element(By.CSS_SELECTOR, '[data-testid="person-rename"]').click()
    alert = WebDriverWait(browser, 10).until(lambda d: d.switch_to.alert)
    alert.send_keys("Dee Dee")
    alert.accept()
    search.clear()
    search.send_keys("dee")
    WebDriverWait(browser, 30).until(lambda d: person_row(d, "Dee Dee") is not None)
    assert site.api("GET", "persons/Dee%20Dee").status_code == 200
    for p in site.api("GET", "persons").json():
        assert site.api("DELETE", f"persons/{p['name'].replace('/', '%2F')}").status_code == 200


# -- live: the fake camera, identified continuously -------------------------------------------------

def test_the_live_view_names_the_face_on_the_camera(browser: webdriver.Chrome, site: Site) -> None:
    y = site.photos
    r = site.api("POST", f"persons/{LIVE_PERSON}/faces",
                 files=[("images", ("n.png", (y / f"{LIVE_PERSON}/09_normal.png").read_bytes()))])
    assert r.status_code == 201
    open_page(browser, site, KEYS["read"], "live")
    el(browser, "live-start").click()
    wait_text(browser, "live-result", LIVE_PERSON)
    wait_text(browser, "live-rate", "frames/s")
    # boxes are drawn over the video: the overlay has the video's size and some non-transparent pixels
    painted = browser.execute_script(
        "const c = arguments[0]; const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n;", el(browser, "live-overlay"))
    assert painted > 100
    el(browser, "live-stop").click()
    assert el(browser, "live-start").is_enabled()

    # one webcam capture, identified; then one enrolled (it is another frame, so a new face)
    el(browser, "tab-identify").click()
    el(browser, "identify-camera").click()
    WebDriverWait(browser, 30).until(lambda d: el(d, "camera-snap").is_displayed())
    el(browser, "camera-snap").click()
    wait_text(browser, "identify-result", LIVE_PERSON)
    box = el(browser, "key-input")
    box.clear()
    box.send_keys(KEYS["admin"])
    el(browser, "tab-enrol").click()
    el(browser, "enrol-name").send_keys(LIVE_PERSON)
    el(browser, "enrol-camera").click()
    WebDriverWait(browser, 30).until(lambda d: el(d, "camera-snap").is_displayed())
    el(browser, "camera-snap").click()
    wait_text(browser, "enrol-captures", "1 webcam capture to enrol")
    el(browser, "enrol-submit").click()
    wait_text(browser, "enrol-result", "1 face(s) added")
    assert len(site.api("GET", f"persons/{LIVE_PERSON}").json()["faces"]) == 2
    assert site.api("DELETE", f"persons/{LIVE_PERSON}").status_code == 200
