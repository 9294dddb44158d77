"""examples/chat in a real browser: two headless Chromium tabs open the page,
a message typed in one appears in the other (and in the sender's own log).

Needs Debian's `chromium` and `chromium-driver` and selenium (PyPI); the test
skips, saying which is missing, without them.  Chromium runs with a fresh
profile and no network access of its own (no background networking,
component updates or first-run tasks), so the test works offline.
"""
import os
import shutil
import sys
import tempfile
import uuid

import pytest

from .server import REPO, Server, clean_exit, describe

APP = os.path.join(REPO, "examples", "chat", "app.py")
TIMEOUT = 10


def _find(*names):
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    return None


CHROMIUM = _find("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = _find("chromedriver")

try:
    import selenium  # noqa: F401
    SELENIUM = True
except ImportError:
    SELENIUM = False

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER and SELENIUM),
    reason="the chat browser test needs %s" % " and ".join(
        what for what, ok in [("Chromium (apt-get install chromium)", CHROMIUM),
                              ("chromedriver (apt-get install chromium-driver)", CHROMEDRIVER),
                              ("selenium (pip install selenium)", SELENIUM)] if not ok))


@pytest.fixture(scope="module")
def chat():
    srv = Server([sys.executable, APP, "--port", "0"]).start()
    yield srv
    code = srv.stop()
    assert clean_exit(code), "chat app: %s\n%s" % (
        describe(code) if code != "hung" else "hung after SIGTERM", srv.stderr())
    assert not srv.crash_report(), srv.stderr()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="fulmen-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ["--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--user-data-dir=" + profile,
                "--disable-dev-shm-usage"]:
        opts.add_argument(arg)
    # `make asan` preloads libasan into the tests; Chromium must not get it
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")}
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER, env=env),
                              options=opts)
    driver.set_page_load_timeout(TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_message_typed_in_one_tab_appears_in_the_other(chat, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    url = "http://127.0.0.1:%d/" % chat.port
    wait = WebDriverWait(browser, TIMEOUT)

    def open_tab(first):
        if not first:
            browser.switch_to.new_window("tab")
        browser.get(url)
        wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "connected"))
        return browser.current_window_handle, browser.find_element(By.ID, "nick").text

    tab1, nick1 = open_tab(True)
    tab2, nick2 = open_tab(False)
    assert nick1 != nick2 and nick1.startswith("guest-"), (nick1, nick2)

    def log_texts():
        return [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#log li.message")]

    text = "hello from tab one %s \u00e9\u00e8 \U0001F600" % uuid.uuid4().hex[:8]
    browser.switch_to.window(tab1)
    wait.until(EC.text_to_be_present_in_element((By.ID, "log"), nick2 + " joined"))
    box = browser.find_element(By.ID, "text")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)
    wait.until(lambda d: "%s:%s" % (nick1, text) in [t.replace(": ", ":", 1) for t in log_texts()])

    browser.switch_to.window(tab2)
    wait.until(lambda d: "%s:%s" % (nick1, text) in [t.replace(": ", ":", 1) for t in log_texts()])

    # and the other way round, clicking the button this time
    reply = "and back from tab two %s" % uuid.uuid4().hex[:8]
    browser.find_element(By.ID, "text").send_keys(reply)
    browser.find_element(By.ID, "send").click()
    browser.switch_to.window(tab1)
    wait.until(lambda d: "%s:%s" % (nick2, reply) in [t.replace(": ", ":", 1) for t in log_texts()])

    # closing tab two: tab one hears that it left
    browser.switch_to.window(tab2)
    browser.close()
    browser.switch_to.window(tab1)
    wait.until(EC.text_to_be_present_in_element((By.ID, "log"), nick2 + " left"))
    assert chat.problem() == "", chat.problem()
