"""The φ explorer at ImageNet validation scale: a page of 50,000 synthetic images, built with the explorer's
own functions, then opened in headless Chromium (Selenium, Debian's chromedriver).

Prints the time of each step (neighbours in φ, PCA + t-SNE, the bundle, the page), the page's size by part,
the load time, first in a new browser and then again (from the request to the panels' readiness, as the
page measures it, and as the driver sees it), and the time of a click (a point's neighbours, channels and
clusters shown) and of a recolouring by one channel.

    python benchmarks/bench_explorer.py                     # 50,000 images, 512 channels (the paper's φ)
    python benchmarks/bench_explorer.py --images 5000 --screenshot /tmp/explorer.png
    python benchmarks/bench_explorer.py --umap              # also time UMAP on the same φ, for the choice

The synthetic φ is sparse as the paper's: 100 classes, each lighting 16 of the channels; the images are
crops of the bundled photographs (the patches source) at 64×64, so that the thumbnails (32 px, WebP)
weigh what natural images do. Neighbours are searched in φ only (the workflow adds pixels and untrained
φ: three times the neighbour tables).
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from semcore import explorer, explorer_page, sources
from semcore.cluster import neighbour_graph
from semcore.embedding import embedding

from browser import selenium_chromium

CLASSES, LIT = 100, 16


def synthetic(n: int, channels: int, size: int, seed: int = 0):
    """(meta, φ [n, channels], uint8 images in batches of 1,000 [b, size, size, 3], manifest)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    lit = np.stack([rng.choice(channels, LIT, replace=False) for _ in range(CLASSES)])
    phi = np.abs(rng.normal(0, 0.05, (n, channels))).astype(np.float32)
    phi[np.arange(n)[:, None], lit[labels]] += rng.gamma(2, 0.5, (n, LIT)).astype(np.float32)
    keys = [f"val/{i:08d}" for i in range(n)]
    meta = pd.DataFrame({"key": keys, "split": "test", "label": labels})

    def images():
        """Photographs' crops (the patches source), as natural images compress: not the φ's classes."""
        photos = len(sources.bundled_photographs())
        crops = sources.patches(-(-n // photos), 24, 128, None, seed)
        for start in range(0, n, 1000):
            batch = [next(crops).image.convert("RGB").resize((size, size)) for _ in range(min(1000, n - start))]
            yield np.stack([np.asarray(image) for image in batch])

    manifest = pd.DataFrame({"key": keys, "origin": [f"ILSVRC2012_val_{i + 1:08d}.JPEG" for i in range(n)],
                             "label_name": [f"class {label:03d}" for label in labels], "factors": None})
    return meta, phi, images(), manifest


def timed(name: str, work):
    started = time.perf_counter()
    result = work()
    print(f"{name:<34} {time.perf_counter() - started:8.1f} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_explorer.html"))
    parser.add_argument("--screenshot", type=Path, help="a PNG of the page with the first image clicked")
    parser.add_argument("--umap", action="store_true", help="also time umap-learn's UMAP (pip install umap-learn)")
    args = parser.parse_args()

    meta, phi, images, manifest = synthetic(args.images, args.channels, 64)
    print(f"{args.images:,} synthetic images, φ of {args.channels} channels", flush=True)
    found, distances = timed("neighbours in φ (8, exact)", lambda: neighbour_graph(phi, 8))
    maps = timed("PCA + t-SNE (openTSNE)", lambda: embedding(phi, 30, 0, 2))
    if args.umap:
        import umap
        timed("UMAP (umap-learn, for comparison)", lambda: umap.UMAP(random_state=0).fit_transform(phi))
    assignments = {k: pd.DataFrame({"cluster": np.random.default_rng(k).integers(0, k, args.images),
                                    "distance": np.random.default_rng(k).random(args.images)}) for k in (100, 1000)}
    channels = pd.DataFrame({"channel": range(args.channels), "pr": 2.0, "dead": False, "selective": True})
    thumbnails = timed("thumbnails (sprite sheets)", lambda: explorer.sprite_sheets(images, args.images, 32, 90))
    bundle = timed("bundle", lambda: explorer.bundle(
        "synthetic", meta, phi, manifest, maps, {"phi-s0.1": (found, distances)}, assignments, channels, thumbnails,
        pd.DataFrame(columns=["key", "png", "phi_error"]), sigma=0.1, active_fraction=0.1, members=24,
        channel_images=12))
    html = timed("page", lambda: explorer_page.page([bundle], f"φ explorer: {args.images:,} synthetic images"))
    args.out.write_text(html, encoding="utf-8")

    sizes = {"thumbnails": sum(len(s) for s in thumbnails["sheets"]),
             "φ quantised": len(bundle["channels"]["levels"]["data"]) + len(bundle["channels"]["top"]["data"]),
             "neighbours": sum(len(s["rows"]["data"]) + len(s["distances"]["data"]) for s in bundle["neighbours"]),
             "keys and files": sum(map(len, bundle["keys"])) + sum(map(len, bundle["files"]))}
    print(f"page: {len(html.encode()) / 1e6:.1f} MB ({len(thumbnails['sheets'])} sprite sheets); of it "
          + ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in sizes.items()), flush=True)

    with selenium_chromium() as browser:
        for load in ("first load in a new browser", "loaded again"):
            browser.get("about:blank")
            started = time.perf_counter()
            browser.get(args.out.resolve().as_uri())
            while not browser.execute_script("return document.body.dataset.ready"):
                if time.perf_counter() - started > 120:
                    raise TimeoutError(f"the page was not ready in 120 s; its console: {browser.get_log('browser')}")
                time.sleep(0.02)
            wall = time.perf_counter() - started
            timing = json.loads(browser.execute_script("return document.body.dataset.timing"))
            print(f"{load}: ready {timing['ready'] / 1000:.2f} s after the request by the page's clock (HTML "
                  f"parsed at {timing['script'] / 1000:.2f} s, Bokeh's models at {timing['bokeh'] / 1000:.2f} s); "
                  f"{wall:.2f} s by the driver's, Selenium's round trips included", flush=True)
        clicks = [browser.execute_async_script("const done = arguments[1], t = performance.now(); "
                                               "semcore.select(arguments[0]).then(() => done(performance.now() - t));", row)
                  for row in (0, 1)]
        print(f"a click (neighbours, channels, clusters shown): {clicks[0]:.0f} ms the first (its arrays decoded), "
              f"{clicks[1]:.0f} ms the next")
        recolour = [browser.execute_async_script(
            "const done = arguments[1], t = performance.now(); document.getElementById('colouring').value = 'channel';"
            "document.getElementById('channel').value = arguments[0]; semcore.recolour().then(() => done(performance.now() - t));",
            str(channel)) for channel in (0, 1)]
        print(f"colour by one channel: {recolour[0]:.0f} ms the first (φ decoded), {recolour[1]:.0f} ms the next")
        if args.screenshot:
            time.sleep(2)  # the sprite sheets the panel shows decode after it
            browser.save_screenshot(str(args.screenshot))
            print(args.screenshot)


if __name__ == "__main__":
    main()
