"""Headless Chromium for the pages semcore writes: the flags every start uses, and a Selenium driver through
Debian's chromedriver (packages chromium and chromium-driver). A new, empty profile each time; nothing
reaches the network (without the background-networking flags Chromium keeps calling Google's hosts)."""

import shutil
import tempfile
from contextlib import contextmanager

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver", "chromium.chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def find_chromium() -> str | None:
    return next(filter(None, map(shutil.which, BROWSERS)), None)


def find_chromedriver() -> str | None:
    return next(filter(None, map(shutil.which, DRIVERS)), None)


@contextmanager
def selenium_chromium(width: int = 1500, height: int = 1000):
    """A Selenium WebDriver on headless Chromium, driven through the chromedriver on the PATH (never one
    Selenium would download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = find_chromium(), find_chromedriver()
    if chromium is None or driver is None:
        raise FileNotFoundError("Chromium and its chromedriver are needed (Debian: apt-get install chromium "
                                "chromium-driver)")
    with tempfile.TemporaryDirectory() as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in [*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
            options.add_argument(flag)
        browser = webdriver.Chrome(service=Service(driver), options=options)
        try:
            yield browser
        finally:
            browser.quit()
