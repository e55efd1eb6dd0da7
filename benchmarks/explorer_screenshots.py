"""Screenshots of a φ explorer page, used as a person uses it, for a person to look at
(`make explorer-screenshots`); tests/test_explorer.py drives the page with the same functions.

    python benchmarks/explorer_screenshots.py results/demo/explorer.html results/demo/explorer_screenshots

Writes 01-label.png (the map coloured by label), 02-cluster.png (by the first k-means clustering),
03-clicked.png (an image clicked on the map: its neighbours in φ, pixels and untrained φ), 04-channels.png
(its most active channels, each with the images it responds to most) and 05-channel.png (the map coloured
by its most active channel). Needs Chromium and chromedriver (Debian: apt-get install chromium
chromium-driver).
"""

import argparse
import time
from pathlib import Path

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from browser import selenium_chromium


def open_page(browser, page: Path, timeout: float = 60) -> None:
    """Loads the page and waits until its panels are ready; a script error fails at once, with the console."""
    browser.get(Path(page).resolve().as_uri())
    started = time.monotonic()
    while not browser.execute_script("return document.body.dataset.ready"):
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        if errors or time.monotonic() - started > timeout:
            raise RuntimeError(f"{page} not ready after {time.monotonic() - started:.0f} s; console errors: {errors}")
        time.sleep(0.05)


def isolated_point(browser) -> int:
    """A point with no other within 12 screen pixels (a click on it hits it alone), near the map's middle."""
    return browser.execute_async_script("""
        const done = arguments[0], n = semcore.state.run.count, found = [];
        Promise.all(Array.from({length: n}, (_, i) => semcore.whereIs(i))).then((at) => {
          const area = document.getElementById("map-area").getBoundingClientRect();
          const cx = area.left + area.width / 2, cy = area.top + area.height / 2;
          let best = -1, bestDistance = Infinity;
          for (let i = 0; i < n; i++) {
            const crowded = at.some((p, j) => j !== i && Math.hypot(p.x - at[i].x, p.y - at[i].y) < 12);
            const distance = Math.hypot(at[i].x - cx, at[i].y - cy);
            if (!crowded && distance < bestDistance) [best, bestDistance] = [i, distance];
          }
          done(best);
        });""")


def click_point(browser, row: int) -> str:
    """Clicks point `row` on the map with the mouse, as a person would; returns the key the panel shows."""
    at = browser.execute_async_script("semcore.whereIs(arguments[0]).then(arguments[1]);", row)
    body = browser.find_element(By.TAG_NAME, "body")
    size, origin = body.size, body.location
    ActionChains(browser).move_to_element_with_offset(
        body, at["x"] - origin["x"] - size["width"] / 2, at["y"] - origin["y"] - size["height"] / 2).click().perform()
    for _ in range(200):
        if browser.execute_script("return document.body.dataset.selected"):
            return browser.execute_script("return document.body.dataset.selected")
        time.sleep(0.05)
    raise RuntimeError(f"clicking point {row} selected nothing")


def colour_by(browser, name: str) -> str:
    """Chooses a colouring by its visible name; returns the legend's text once it shows it."""
    Select(browser.find_element(By.ID, "colouring")).select_by_visible_text(name)
    for _ in range(200):
        legend = browser.find_element(By.ID, "legend")
        if legend.get_attribute("data-colouring") == name:
            return legend.text
        time.sleep(0.05)
    raise RuntimeError(f"the legend never showed {name!r}")


def search(browser, text: str) -> None:
    """Types `text` into the search box and presses Enter, then lets the page answer."""
    box = browser.find_element(By.ID, "query")
    box.clear()
    box.send_keys(text, Keys.ENTER)
    settle(browser, 0.3)


def panel_keys(browser, space: str) -> list[str]:
    """The keys of the images shown as nearest in `space` (a feature set: phi-s0.1, pixels…), in order."""
    section = browser.find_element(By.CSS_SELECTOR, f'section.neighbours[data-space="{space}"]')
    return [figure.get_attribute("data-key") for figure in section.find_elements(By.CSS_SELECTOR, ".figure")]


def settle(browser, seconds: float = 0.5) -> None:
    """Lets the map redraw and the sprite sheets decode before a screenshot."""
    time.sleep(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path, help="an explorer page (results/<name>/explorer.html)")
    parser.add_argument("out", type=Path, help="folder for the screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with selenium_chromium(1600, 1000) as browser:
        open_page(browser, args.page)
        ready = int(browser.execute_script("return document.body.dataset.ready"))
        print(f"{args.page}: {args.page.stat().st_size / 1e6:.1f} MB, ready {ready / 1000:.2f} s after the request")
        colour_by(browser, "label")
        settle(browser)
        browser.save_screenshot(str(args.out / "01-label.png"))
        cluster = next(option.text for option in Select(browser.find_element(By.ID, "colouring")).options
                       if option.text.startswith("cluster"))
        colour_by(browser, cluster)
        settle(browser)
        browser.save_screenshot(str(args.out / "02-cluster.png"))
        key = click_point(browser, isolated_point(browser))
        settle(browser)
        browser.save_screenshot(str(args.out / "03-clicked.png"))
        browser.execute_script("document.getElementById('channels').scrollIntoView()")
        settle(browser)
        browser.save_screenshot(str(args.out / "04-channels.png"))
        browser.execute_script("semcore.barTapped([0])")
        settle(browser)
        browser.save_screenshot(str(args.out / "05-channel.png"))
        print(f"clicked {key}; screenshots in {args.out}")


if __name__ == "__main__":
    main()
