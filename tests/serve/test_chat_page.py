"""The chat page at / in headless Chromium: a message goes out and the streamed reply shows up.
Needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver) and selenium."""
import os
import shutil

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test drives Chromium with selenium")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)),
                                reason="no browser: apt-get install chromium chromium-driver")


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def test_page_sends_a_message_and_shows_the_streamed_reply(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    before = server.metrics()["minillm_generation_tokens_total"]
    browser.get(server.url + "/")
    # record every text the reply shows on its way: streamed means several growing versions
    browser.execute_script("""window.seen = [];
        new MutationObserver(() => { const a = document.querySelector('#log .assistant');
            if (a && a.textContent && window.seen[window.seen.length - 1] !== a.textContent)
                window.seen.push(a.textContent); })
        .observe(document.getElementById('log'), {subtree: true, childList: true, characterData: true});""")
    temperature = browser.find_element(By.ID, "temperature")   # greedy: the same reply every run
    browser.execute_script("arguments[0].value = '0'", temperature)
    box = browser.find_element(By.ID, "input")
    box.send_keys("Hello there")
    browser.find_element(By.ID, "send").click()
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_element(By.ID, "send").is_enabled() and
               d.find_elements(By.CSS_SELECTOR, "#log .msg:not(.user)"))   # the reply (or an error) is in
    assert not browser.find_elements(By.CSS_SELECTOR, "#log .error"), browser.find_element(By.ID, "log").text
    user = browser.find_element(By.CSS_SELECTOR, "#log .user").text
    reply = browser.find_element(By.CSS_SELECTOR, "#log .assistant").text
    assert user == "Hello there" and reply and not browser.find_elements(By.CSS_SELECTOR, "#log .error")
    seen = browser.execute_script("return window.seen")
    assert len(seen) >= 2 and all(b.startswith(a) for a, b in zip(seen, seen[1:]))   # grew piece by piece
    assert seen[-1].split() == reply.split()          # (the driver normalizes whitespace)
    after = server.metrics()
    assert after["minillm_generation_tokens_total"] > before     # it came from the server's engine
    assert after["minillm_time_to_first_token_seconds_count"] >= 1
