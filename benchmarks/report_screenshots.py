"""Screenshots of a Snakemake report's pages, for a person to look at (`make report-screenshots`).

The report is one HTML file running a JavaScript app with no address per page, so each page is a copy of
the report with a line of script that opens it once loaded: the start page, each category, and each
result (its figure or table, its caption in the side panel). Headless Chromium renders each copy to
`<out>/<NN>-<page>.png`.

    python benchmarks/report_screenshots.py results/demo/report.html results/demo/report_screenshots
    python benchmarks/report_screenshots.py REPORT OUT --pages 3   # the first 3 pages only

Needs Chromium (Debian: `apt-get install chromium`).
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from browser import BROWSERS, FLAGS, find_chromium

WINDOW = (1400, 2000)
IMAGES = (".png", ".jpg", ".jpeg", ".svg")


def report_data(report: str, name: str) -> dict:
    """One of the report's embedded JSON objects ("results": path → result, "categories": name →
    subcategory → paths)."""
    found = re.search(rf'<script id="{name}">\s*var \w+ = (.*?);?\s*</script>', report, re.S)
    if not found:
        raise ValueError(f"no {name} in the report: not a Snakemake HTML report?")
    return json.loads(found[1])


def pages(report: str) -> list[tuple[str, str]]:
    """(name, JavaScript that opens the page) for the start page, each category and each result."""
    results, categories = report_data(report, "results"), report_data(report, "categories")
    found = [("start", "")]
    found += [(f"category {name}", f"app.showCategory({json.dumps(name)})") for name in sorted(categories)]
    for name in sorted(categories):
        for subcategory in sorted(categories[name]):
            for path in categories[name][subcategory]:
                content = "img" if path.lower().endswith(IMAGES) else "html"
                view = dict(navbarMode="resultinfo", resultPath=path, content=content,
                            contentPath=results[path]["data_uri"])
                found.append((f"{name} {Path(path).name}", f"app.setView({json.dumps(view)})"))
    return found


def screenshot(chromium: str, html: Path, png: Path, timeout: float = 60, tries: int = 2) -> None:
    """Chromium renders the page, its scripts given 10 s of virtual time, to png. A new, empty profile
    each time; nothing reaches the network. Headless Chromium now and then hangs on a page: after
    `timeout` seconds it is killed and tried again."""
    for attempt in range(tries):
        with tempfile.TemporaryDirectory() as profile:
            cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                   "--virtual-time-budget=10000", f"--screenshot={png}", html.resolve().as_uri()]
            try:
                result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                if attempt == tries - 1:
                    raise
                continue
        if result.returncode != 0 or not png.exists():
            raise RuntimeError(f"chromium failed ({result.returncode}) on {html}: {result.stderr[-2000:]}")
        return


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="a Snakemake HTML report (snakemake --report report.html)")
    parser.add_argument("out", type=Path, help="folder for the screenshots")
    parser.add_argument("--pages", type=int, help="only the first N pages")
    args = parser.parse_args()
    chromium = find_chromium()
    if chromium is None:
        sys.exit(f"none of {', '.join(BROWSERS)} found: install Chromium (Debian: apt-get install chromium)")
    report = args.report.read_text(encoding="utf-8")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, script) in enumerate(pages(report)[:args.pages]):
            # The page's opening runs once the app has rendered (the app sets the global `app`).
            head, _, tail = report.rpartition("</body>")
            opened = (f"{head}<script>window.addEventListener('load', () => setTimeout(() => {{ {script} }}, 100));"
                      f"</script>\n</body>{tail}")
            html, png = Path(tmp) / "page.html", args.out / f"{i:02d}-{slug(name)}.png"
            html.write_text(opened, encoding="utf-8")
            screenshot(chromium, html, png)
            print(png)


if __name__ == "__main__":
    main()
