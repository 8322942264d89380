"""The web console in a real browser: headless Chromium (Debian's chromium and chromium-driver) opens
``/console``, calls the server over WebRTC with a fake microphone playing an espeak-ng phrase, and the
call's events appear on the page. A screenshot of the page is kept (``PYPBX_ARTIFACTS``, else the test's
temporary folder).

Chromium is kept to loopback: the server's only candidate is 127.0.0.1, loopback candidates are allowed,
and its host resolver maps every name but localhost to nothing, so it looks up and reaches no one else
(no ICE servers are configured, so it asks no STUN server).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from pbx.webrtc.config import WebRtcConfig
from support.audio import espeak_speech, write_wav
from tests.support.calls import running_server

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
selenium = pytest.importorskip("selenium", reason="the browser test drives Chromium with selenium (test extra)")
pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                reason="Debian's chromium and chromium-driver are not installed")

PHRASE = "hello there please call stella"


def browser(fake_microphone: Path) -> object:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--window-size=1200,1500",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={fake_microphone}%noloop",
                 "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))


def events_on_page(driver: object) -> list[str]:
    from selenium.webdriver.common.by import By
    return [li.get_attribute("data-event") for li in driver.find_elements(By.CSS_SELECTOR, "#events li")]  # type: ignore[attr-defined]


def test_the_console_calls_the_server_from_chromium_and_shows_the_events(tmp_path: Path) -> None:
    microphone = tmp_path / "microphone.wav"
    silence = np.zeros(16000, np.int16)
    write_wav(microphone, np.concatenate([silence, espeak_speech(16000, text=PHRASE), silence, silence, silence]),
              16000)
    artifacts = Path(os.environ.get("PYPBX_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    screenshot = artifacts / "console.png"

    async def run() -> list[str]:
        async with running_server(tmp_path / "data", webrtc=WebRtcConfig(addr="127.0.0.1")) as (_, address):
            driver = await asyncio.to_thread(browser, microphone)
            try:
                return await asyncio.to_thread(use_console, driver, address)
            finally:
                await asyncio.to_thread(driver.quit)  # type: ignore[attr-defined]

    def use_console(driver: object, address: str) -> list[str]:
        from selenium.webdriver.common.by import By
        driver.get(f"http://{address}/console")  # type: ignore[attr-defined]
        driver.find_element(By.ID, "call").click()  # type: ignore[attr-defined]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "asrFinal" not in events_on_page(driver):
            time.sleep(0.2)
        driver.find_element(By.ID, "tts").click()  # type: ignore[attr-defined]
        while time.monotonic() < deadline and "trackEnd" not in events_on_page(driver):
            time.sleep(0.2)
        driver.save_screenshot(str(screenshot))  # type: ignore[attr-defined]
        driver.find_element(By.ID, "hangup").click()  # type: ignore[attr-defined]
        while time.monotonic() < deadline and "hangup" not in events_on_page(driver):
            time.sleep(0.2)
        return events_on_page(driver)

    events = asyncio.run(run())
    assert events[0] == "answer", events
    for name in ("speaking", "silence", "asrFinal", "trackStart", "trackEnd", "hangup"):
        assert name in events, (name, events)
    assert screenshot.stat().st_size > 10_000
