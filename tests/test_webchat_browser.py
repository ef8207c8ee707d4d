"""The browser chat at `/`, driven in a real headless Chromium (Selenium) against the real server.

The server requires a key; the tiny model never ends on its own (EOS suppressed, context 4096), so
a reasoning budget shapes a short turn (reasoning closed by the server, then an answer) and a turn
without one runs long enough to be stopped. Skipped, saying why, when Selenium, Chromium or its
driver is missing (`make test` installs them as root); TINYSEEK_CHROMIUM=PATH picks another Chromium
or Chrome binary. TINYSEEK_SCREENSHOTS=DIR also copies the
screenshot there (the README's comes from that).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from tests.fixtures import chat_model_dir
from tests.serve_harness import RunningServer
from tinyseek.model.transformer import Transformer
from tinyseek.serve.state import ServerSettings

MODEL = "tiny-r1"
KEY = "s3cret-key"
CHROMIUM = os.environ.get("TINYSEEK_CHROMIUM") or next(
    (p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None
)
DRIVER = shutil.which("chromedriver") or next(
    (p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if os.path.exists(p)), None
)


def _never_ending_model(directory: Path) -> Path:
    """serve_harness's tiny model with a long context and the end-of-sequence token suppressed."""
    chat_model_dir(directory, context=4096)
    model = Transformer.from_pretrained(directory)
    eos = model.config.eos_token_id
    with torch.no_grad():
        model.lm_head.weight[eos, 0] = -30.0 / 5.0
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _never_ending_model(tmp_path_factory.mktemp("endless"))


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[RunningServer]:
    running = RunningServer(ServerSettings(model_dir=model_dir, served_model_name=MODEL, api_key=KEY))
    yield running
    running.stop()


def test_page_and_assets_are_served_without_the_key(server: RunningServer) -> None:
    page = httpx.get(f"{server.base_url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/chat/chat.js" in page.text and "http" not in page.text.replace("http-equiv", "")  # no CDN
    assert httpx.get(f"{server.base_url}/chat/chat.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{server.base_url}/chat/chat.css").status_code == 200
    missing = httpx.get(f"{server.base_url}/chat/..%2Fapp.py")
    assert missing.status_code == 404
    assert httpx.get(f"{server.base_url}/v1/models").status_code == 401  # the API still needs it


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium, or make install)")
    if CHROMIUM is None or DRIVER is None or not os.path.exists(CHROMIUM):
        pytest.skip(
            "no Chromium/chromedriver: run 'make browser' as root or 'apt-get install chromium chromium-driver'"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1100,820",
    ):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    except Exception as err:  # a broken install: say so rather than fail the suite
        pytest.skip(f"Chromium did not start under Selenium: {str(err).splitlines()[0]}")
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def _until(condition: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


RECORD_BODIES = """
window.__bodies = [];
const original = window.fetch;
window.fetch = (url, init) => {
  if (init && init.body) window.__bodies.push(JSON.parse(init.body));
  return original(url, init);
};
"""


def _set(driver: Any, element_id: str, value: str) -> None:
    field = driver.find_element("id", element_id)
    field.clear()
    if value:
        field.send_keys(value)


def _send(driver: Any, text: str) -> None:
    driver.find_element("id", "prompt").send_keys(text + "\n")


def _idle(driver: Any) -> bool:
    return bool(driver.find_element("id", "send").is_displayed())


def test_chat_in_a_real_browser(server: RunningServer, browser: Any, tmp_path: Path) -> None:
    driver = browser
    driver.get(f"{server.base_url}/")
    _until(lambda: driver.find_element("id", "key-form").is_displayed(), 20, "the key form")
    driver.find_element("id", "key-input").send_keys(KEY + "\n")
    _until(lambda: driver.find_element("id", "model-name").text == MODEL, 20, "the model name")
    driver.execute_script(RECORD_BODIES)

    # A turn: reasoning budget 12, so the server closes the reasoning, then a 60-token answer.
    _set(driver, "max-tokens", "60")
    _set(driver, "reasoning-budget", "12")
    _send(driver, "What is 12 + 30?")
    _until(
        lambda: _idle(driver) and driver.find_elements("css selector", ".assistant .answer"), 60, "a reply"
    )
    summary = driver.find_element("css selector", ".assistant .reasoning summary").text
    match = re.fullmatch(r"Thought for (\d+\.\d) s · (\d+) tokens", summary)
    assert match, summary
    assert 1 <= int(match[2]) <= 12
    thought = driver.find_element("css selector", ".assistant .reasoning .thought")
    answer = driver.find_element("css selector", ".assistant .answer").text
    assert thought.get_attribute("textContent").strip() and answer.strip()
    driver.find_element("css selector", ".assistant .reasoning summary").click()  # expand for the picture
    _until(lambda: thought.is_displayed(), 5, "the reasoning to expand")
    screenshot = tmp_path / "webchat.png"
    driver.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("TINYSEEK_SCREENSHOTS"):
        shutil.copy(screenshot, Path(os.environ["TINYSEEK_SCREENSHOTS"]) / "webchat.png")

    # A second turn sends the history back without the reasoning, then runs long until stopped.
    _set(driver, "max-tokens", "3000")
    _set(driver, "reasoning-budget", "")
    loop = server.state.loaded.loop  # type: ignore[union-attr]
    cancelled = server.state.metrics.cancelled._value.get()
    _send(driver, "And 5 + 5?")
    _until(
        lambda: loop.in_flight == 1 and len(driver.find_elements("css selector", ".assistant")) == 2,
        30,
        "generation",
    )
    time.sleep(0.5)
    driver.find_element("id", "stop").click()
    _until(
        lambda: "(stopped)" in driver.find_elements("css selector", ".assistant")[-1].text, 10, "(stopped)"
    )
    _until(lambda: loop.in_flight == 0, 10, "the server to abort the generation")
    assert server.state.metrics.cancelled._value.get() == cancelled + 1
    bodies = driver.execute_script("return window.__bodies")
    first, second = bodies[0], bodies[1]
    assert first["max_reasoning_tokens"] == 12 and "max_reasoning_tokens" not in second
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    assert second["messages"][1] == {"role": "assistant", "content": answer}  # no reasoning sent back
    assert second["max_tokens"] == 3000 and second["stream"] is True

    # New chat in the middle of a generation: it is cancelled, and the history starts again.
    _send(driver, "Count to a thousand.")
    _until(lambda: loop.in_flight == 1, 30, "the third generation")
    driver.find_element("id", "new-chat").click()
    _until(lambda: loop.in_flight == 0 and _idle(driver), 10, "New chat to cancel the generation")
    assert driver.find_elements("css selector", "#messages .msg") == []
    _set(driver, "max-tokens", "5")
    _send(driver, "Hi")
    _until(
        lambda: _idle(driver) and len(driver.execute_script("return window.__bodies")) == 4, 30, "a new chat"
    )
    assert driver.execute_script("return window.__bodies")[3]["messages"] == [
        {"role": "user", "content": "Hi"}
    ]

    # A wrong key: the API's 401 is shown as a message, and the key form comes back.
    driver.find_element("id", "change-key").click()
    driver.find_element("id", "key-input").send_keys("wrong-key\n")
    error = _until(lambda: driver.find_elements("css selector", ".msg.error"), 20, "an error message")
    assert "401" in error[-1].text and "API key" in error[-1].text
    assert driver.find_element("id", "key-form").is_displayed()
    assert (
        json.loads(driver.execute_script("return JSON.stringify(localStorage)"))["tinyseek.apiKey"]
        == "wrong-key"
    )


def test_without_a_key_the_page_asks_for_none(model_dir: Path, browser: Any) -> None:
    running = RunningServer(ServerSettings(model_dir=model_dir, served_model_name=MODEL))
    try:
        browser.get(f"{running.base_url}/")
        _until(lambda: browser.find_element("id", "model-name").text == MODEL, 20, "the model name")
        assert not browser.find_element("id", "key-form").is_displayed()
        assert not browser.find_element("id", "change-key").is_displayed()
        _set(browser, "max-tokens", "4")
        _send(browser, "Hi")
        _until(
            lambda: _idle(browser) and browser.find_elements("css selector", ".assistant .note"),
            30,
            "a reply",
        )
        assert "(stopped at the max tokens limit)" in browser.find_element("css selector", ".assistant").text
        assert browser.find_elements("css selector", ".msg.error") == []
    finally:
        running.stop()
