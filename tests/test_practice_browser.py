"""The practice page end to end in a real headless Chromium (Selenium), against `needleplan practice`.

Skipped when Selenium or Debian's chromium / chromedriver are missing (scripts/install-browser.sh installs them).
The finished attempt is saved as tests/artifacts/practice-browser.png (the review as practice-browser-review.png,
a failure as practice-browser-failed.png) for a person to look at.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SERVER_START_S = 120.0

try:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - depends on the environment
    webdriver = None

pytestmark = [
    pytest.mark.browser, pytest.mark.slow,
    pytest.mark.skipif(webdriver is None, reason="selenium is not installed (pip install selenium)"),
    pytest.mark.skipif(not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
                       reason=f"{CHROMIUM} or {CHROMEDRIVER} missing (scripts/install-browser.sh installs Debian's "
                              "chromium and chromium-driver)"),
]


def _read_lines(stream, put) -> None:
    """Drain a pipe line by line (so that the server never blocks on a full one); None at its end."""
    for line in stream:
        put(line)
    put(None)


@contextlib.contextmanager
def practice_server(*arguments: str):
    """Run `needleplan practice ARGUMENTS --port 0`; yields the page's address once it is printed."""
    process = subprocess.Popen([sys.executable, "-m", "needleplan", "practice", *arguments, "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    errors: list[str | None] = []
    threading.Thread(target=_read_lines, args=(process.stdout, lines.put), daemon=True).start()
    stderr_reader = threading.Thread(target=_read_lines, args=(process.stderr, errors.append), daemon=True)
    stderr_reader.start()
    url = None
    deadline = time.monotonic() + SERVER_START_S
    try:
        while url is None:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"`needleplan practice` printed no address within {SERVER_START_S:.0f} s")
            try:
                line = lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if line is None:  # stdout closed: the server died
                process.wait(timeout=10)
                stderr_reader.join(timeout=10)
                pytest.fail(f"`needleplan practice` exited with {process.returncode} before serving:\n"
                            f"{''.join(line for line in errors if line)}")
            match = re.search(r"open (http://\S+)", line)
            if match:
                url = match.group(1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("practice-logs")


@pytest.fixture(scope="module")
def server(logs):
    """`needleplan practice` on the phantom (left L4 TFESI); yields the page's address."""
    with practice_server("--log-dir", str(logs)) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--window-size=1280,1000",
                     f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(argument)
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    except WebDriverException as error:
        pytest.skip(f"Chromium could not be started: {error.msg or error}")
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def wait_for(driver, condition, timeout: float = 20.0, what: str = "the page"):
    """Wait until ``condition(driver)`` is truthy; on timeout, fail with the page's status and error lines."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)
    except TimeoutException:
        status = driver.find_element(By.ID, "status").text
        error = driver.find_element(By.ID, "error").text
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; status: {status!r}; error: {error!r}")


def text_of(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text.strip()


def idle(driver) -> bool:
    """No request of the page is queued or running."""
    return bool(driver.execute_script("return window.practice && window.practice.idle()"))


def errors(driver) -> list:
    return driver.execute_script("return window.practice ? window.practice.errors : ['no page']")


def shot_loaded(driver, number: int) -> bool:
    return driver.execute_script(
        "const img = document.getElementById('shot-image');"
        "return window.practice.lastShot !== null && window.practice.lastShot.number === arguments[0]"
        " && img.src.startsWith('data:image/png') && img.complete && img.naturalWidth === 512;", number)


def picture_loaded(driver, element_id: str) -> bool:
    return driver.execute_script(
        "const img = document.getElementById(arguments[0]);"
        "return Boolean(img.getAttribute('src')) && img.complete && img.naturalWidth > 0;", element_id)


def press(driver, *keys: str) -> None:
    """Keys to the page with nothing focused (shortcuts are off while typing in a field)."""
    driver.execute_script("if (document.activeElement) document.activeElement.blur();")
    ActionChains(driver).send_keys(*keys).perform()


def needle_depth(driver) -> float | None:
    return driver.execute_script(
        "const s = window.practice.state; return s && s.needle ? s.needle.depth_mm : null;")


@contextlib.contextmanager
def screenshot_on_failure(driver, name: str):
    """Save the page as tests/artifacts/NAME when the block fails, to see what went wrong."""
    try:
        yield
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        with contextlib.suppress(WebDriverException):
            driver.save_screenshot(str(ARTIFACTS / name))
        raise


def test_a_whole_attempt_in_the_browser(server, browser):
    with screenshot_on_failure(browser, "practice-browser-failed.png"):
        attempt(browser, server)


def attempt(driver, server: str) -> None:
    driver.get(server)

    # the task, and a session started on load
    wait_for(driver, lambda d: "transforaminal" in text_of(d, "task-title").lower(), what="the task")
    assert "L4" in text_of(driver, "task-title")
    assert text_of(driver, "task-target")
    assert "22" in text_of(driver, "task-needle")
    wait_for(driver, lambda d: d.execute_script("return window.practice.session") and idle(d), what="a session")
    assert text_of(driver, "shot-count") == "0"

    # AP, shoot: the image arrives, the counters move, the pose of the image is shown
    driver.find_element(By.ID, "preset-oblique").click()
    driver.find_element(By.ID, "preset-ap").click()
    driver.find_element(By.ID, "shoot").click()
    wait_for(driver, lambda d: shot_loaded(d, 1) and text_of(d, "shot-count") == "1", what="shot 1")
    assert float(text_of(driver, "dose")) > 0
    assert "AP" in text_of(driver, "shot-pose")
    assert driver.find_element(By.ID, "oblique").get_attribute("value") == "0"
    image = driver.find_element(By.ID, "shot-image")
    assert image.size == {"width": 512, "height": 512}
    assert image.value_of_css_property("image-rendering") in ("pixelated", "crisp-edges")

    # pick the skin entry on the image: left of the spine (image left is the patient's left here)
    driver.find_element(By.ID, "pick-entry").click()
    ActionChains(driver).move_to_element_with_offset(image, -50, 10).click().perform()
    wait_for(driver, lambda d: idle(d) and needle_depth(d) is not None, what="the needle on the skin")
    assert needle_depth(driver) == 0.0
    assert "placed" in text_of(driver, "status")
    assert "left of the midline" in text_of(driver, "status")

    # into the oblique view, aim down the beam, advance a few steps
    driver.find_element(By.ID, "preset-oblique").click()
    driver.find_element(By.ID, "aim-beam").click()
    wait_for(driver, lambda d: idle(d), what="the aim")
    assert "aimed" in text_of(driver, "status")
    obliques = driver.execute_script("return [window.practice.state.carm.oblique_deg,"
                                     " window.practice.state.needle.oblique_deg]")
    assert obliques[0] == 25.0 and abs(obliques[1] - 25.0) < 3.0
    step = driver.find_element(By.ID, "step-mm")
    step.clear()
    step.send_keys("10")
    for _ in range(3):
        driver.find_element(By.ID, "advance").click()
    wait_for(driver, lambda d: idle(d), what="three advances")
    assert needle_depth(driver) > 5.0
    assert "Depth" in text_of(driver, "needle-state")

    # keyboard: Space shoots, W advances one step, Right turns the C-arm 1 degree
    depth = needle_depth(driver)
    press(driver, " ")
    wait_for(driver, lambda d: shot_loaded(d, 2) and text_of(d, "shot-count") == "2", what="the Space shot")
    press(driver, "w")
    wait_for(driver, lambda d: idle(d) and needle_depth(d) != depth, what="the W advance")
    # I turns the tip cephalad: the needle's tilt (as a C-arm angle) +1; J medial, for a left task oblique +1
    angles = "const n = window.practice.state.needle; return [n.oblique_deg, n.tilt_deg];"
    before = driver.execute_script(angles)
    press(driver, "i")
    wait_for(driver, lambda d: idle(d) and d.execute_script(angles) != before, what="the I redirect")
    after = driver.execute_script(angles)
    assert abs(after[1] - before[1] - 1.0) < 0.05 and abs(after[0] - before[0]) < 0.05
    press(driver, "j")
    wait_for(driver, lambda d: idle(d) and d.execute_script(angles) != after, what="the J redirect")
    turned = driver.execute_script(angles)
    assert abs(turned[0] - after[0] - 1.0) < 0.05 and abs(turned[1] - after[1]) < 0.05
    press(driver, Keys.ARROW_RIGHT)
    wait_for(driver, lambda d: idle(d) and d.execute_script("return window.practice.state.carm.oblique_deg") == 26.0,
             what="the Right arrow")
    assert driver.find_element(By.ID, "oblique").get_attribute("value") == "26"

    # three quick presses: one renders, one waits, the third is refused; the controls stay live meanwhile
    live = driver.execute_script(
        "const shoot = document.getElementById('shoot'); shoot.click(); shoot.click(); shoot.click();"
        "const live = ['oblique', 'advance', 'aim-beam', 'shoot', 'finish'];"
        "return live.every(id => !document.getElementById(id).disabled) && window.practice.shotsPending === 2;")
    assert live
    wait_for(driver, lambda d: idle(d) and shot_loaded(d, 4), what="the two queued shots")
    assert text_of(driver, "shot-count") == "4"
    assert "26" in text_of(driver, "shot-pose")

    # finish: score, summary, parts, the reveal and the 3D review pictures
    driver.find_element(By.ID, "finish").click()
    wait_for(driver, lambda d: re.fullmatch(r"\d+(\.\d+)?", text_of(d, "score-points")), timeout=30,
             what="the score")
    points = float(text_of(driver, "score-points"))
    assert 0.0 <= points <= 100.0
    assert text_of(driver, "score-passed") in ("passed", "not passed")
    summary = driver.find_elements(By.CSS_SELECTOR, "#score-summary li")
    assert summary and all(item.text.strip() for item in summary)
    parts = text_of(driver, "score-parts")
    for part in ("Tip", "Angle", "Safety", "Views", "Radiation", "Efficiency"):
        assert part in parts
    wait_for(driver, lambda d: picture_loaded(d, "reveal-image"), timeout=30, what="the reveal picture")
    wait_for(driver, lambda d: picture_loaded(d, "review-image"), timeout=45, what="the 3D review picture")
    assert not driver.find_element(By.ID, "review-loading").is_displayed()

    assert errors(driver) == []
    assert not driver.find_element(By.ID, "error").is_displayed()
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "practice-browser.png"))

    # a new attempt: a fresh session, the monitor cleared
    first = driver.execute_script("return window.practice.session")
    driver.find_element(By.ID, "new-attempt").click()
    wait_for(driver, lambda d: idle(d) and d.execute_script("return window.practice.session") not in (None, first),
             what="the new session")
    assert text_of(driver, "shot-count") == "0"
    assert driver.find_element(By.ID, "shoot").is_enabled()
    assert not driver.find_element(By.ID, "results").is_displayed()
    assert errors(driver) == []


def test_an_api_error_is_shown(server, browser):
    """A refused request (advance before any needle: 409) shows the server's message; nothing is hidden."""
    driver = browser
    driver.get(server)
    wait_for(driver, lambda d: d.execute_script("return window.practice && window.practice.session") and idle(d),
             what="a session")
    press(driver, "w")
    wait_for(driver, lambda d: d.find_element(By.ID, "error").is_displayed(), what="the error")
    assert "409" in text_of(driver, "error") and len(text_of(driver, "error")) > 20
    assert errors(driver)[0]["status"] == 409


def test_review_steps_through_the_finished_attempt(logs, browser, tmp_path):
    """`--review` on the log the first test wrote: every action listed, its shots re-rendered, the same score."""
    finished = [path for path in sorted(logs.glob("practice-*.json"))
                if json.loads(path.read_text(encoding="utf-8")).get("finished")]
    if not finished:
        pytest.skip("no finished session log (the attempt test did not get to Finish)")
    log = json.loads(finished[0].read_text(encoding="utf-8"))
    driver = browser
    with (practice_server("--review", str(finished[0]), "--log-dir", str(tmp_path)) as url,
          screenshot_on_failure(driver, "practice-browser-review-failed.png")):
        driver.get(url)
        wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#review-list .row")) == len(log["actions"]),
                 what="the list of actions")
        assert not driver.find_element(By.ID, "controls").is_displayed()
        assert abs(float(text_of(driver, "score-points")) - log["score"]["points"]) <= 0.05
        assert driver.find_elements(By.CSS_SELECTOR, "#score-summary li")
        first_shot = next(action for action in log["actions"] if action["kind"] == "shot")
        press(driver, Keys.HOME, "n")
        wait_for(driver, lambda d: d.execute_script("return window.practice.reviewIndex") == first_shot["index"],
                 what="the first shot's step")
        wait_for(driver, lambda d: d.execute_script(
            "const img = document.getElementById('shot-image');"
            "return img.src.endsWith('/api/review/shots/1.png') && img.complete && img.naturalWidth === 512;"),
            timeout=30, what="shot 1 re-rendered")
        assert text_of(driver, "shot-label") == "Shot 1"
        press(driver, Keys.END)
        wait_for(driver, lambda d: d.execute_script("return window.practice.reviewIndex") == len(log["actions"]) - 1,
                 what="the last step")
        assert text_of(driver, "shot-count") == str(log["score"]["radiation"]["shots"])
        assert errors(driver) == []
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "practice-browser-review.png"))
