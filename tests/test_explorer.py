"""The φ explorer: its pieces on data whose answer is known, the tiny run's page read back, and the page used
in a real browser (headless Chromium driven by Selenium through Debian's chromedriver): a click on a point
shows exactly the workflow's neighbours of that image, a new colouring changes the legend.

Chromium and chromedriver are installed with apt-get when missing (root needed); where they cannot be, the
browser test is skipped saying why; where CI is set, it fails instead."""

import base64
import gzip
import io
import json
import re
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from semcore import explorer
from semcore.cluster import neighbour_graph

import conftest
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))


def unpacked(packed: dict) -> np.ndarray:
    data = gzip.decompress(base64.b64decode(packed["data"]))
    return np.frombuffer(data, dtype=packed["dtype"]).reshape(packed["shape"])


def test_neighbour_graph_is_the_exact_nearest_other_rows():
    x = np.random.default_rng(0).normal(size=(300, 7)).astype(np.float32)
    found, distances = neighbour_graph(x, 5)
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_array_equal(found, np.argsort(d, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(distances, np.sort(d, axis=1)[:, :5], rtol=1e-5)
    with pytest.raises(ValueError, match="explorer.neighbours"):
        neighbour_graph(x[:5], 5)


def test_sprite_sheets_put_thumbnail_i_at_its_slot():
    """Lossless sheets: thumbnail i is image i, at column i % 64, row (i // 64) % 64 of sheet i // 4096."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (4100, 4, 6, 3), dtype=np.uint8)
    sheets = explorer.sprite_sheets([images[:3000], images[3000:]], len(images), 32, 100)
    assert (sheets["height"], sheets["width"], len(sheets["sheets"])) == (4, 6, 2)
    decoded = [np.asarray(Image.open(io.BytesIO(base64.b64decode(s)))) for s in sheets["sheets"]]
    assert decoded[0].shape == (64 * 4, 64 * 6, 3) and decoded[1].shape == (4, 64 * 6, 3)
    for i in (0, 63, 64, 4095, 4096, 4099):
        sheet, slot = divmod(i, 4096)
        row, column = divmod(slot, 64)
        np.testing.assert_array_equal(decoded[sheet][row * 4:(row + 1) * 4, column * 6:(column + 1) * 6], images[i])
    assert explorer.thumbnail_size(64, 48, 32) == (32, 24) and explorer.thumbnail_size(16, 16, 32) == (16, 16)


def test_channels_clusters_and_colourings_of_a_known_phi():
    phi = np.array([[0, 1, 4], [0, 3, 2], [0, 2, 0], [0, 0, 1]], np.float32)
    levels, peak = explorer.quantised(phi)
    np.testing.assert_array_equal(peak, [0, 3, 4])
    np.testing.assert_array_equal(levels[:, 1], [85, 255, 170, 0])  # dead channel 0 stays 0
    np.testing.assert_array_equal(explorer.channel_top_images(phi, 2), [[0, 1], [1, 2], [0, 1]])
    top, top_levels = explorer.top_channels(levels, 2)
    np.testing.assert_array_equal(top[:2], [[2, 1], [1, 2]])
    np.testing.assert_array_equal(top_levels[1], [255, 128])
    assignments = pd.DataFrame({"cluster": [1, 0, 1, 1], "distance": [0.3, 0.1, 0.2, 0.9], "row": range(4)})
    np.testing.assert_array_equal(explorer.cluster_members(assignments, 2), [[1, -1], [2, 0]])
    colouring = explorer.categorical("label", pd.Series(["b", "a", "b", "c"]))
    assert colouring["names"] == ["b", "a", "c"] and colouring["counts"] == [2, 1, 1]
    np.testing.assert_array_equal(unpacked(colouring["codes"]), [0, 1, 0, 2])


@pytest.fixture(scope="module")
def tiny_explorer(finished_run):
    return finished_run / "results" / "tiny"


def test_the_tiny_run_maps_every_clustered_image_with_the_workflows_neighbours(tiny_explorer):
    bundle = json.loads((tiny_explorer / "explorer/bundle.json").read_text())
    manifest = pd.read_parquet(tiny_explorer / "manifest.parquet")
    assert bundle["count"] == (manifest.status == "written").sum() == 240
    assert [space["space"] for space in bundle["neighbours"]] == ["phi-s0.1", "untrained-s0.1", "pixels"]
    assert [c["name"] for c in bundle["colourings"]][:2] == ["label", "cluster k=4"]
    assert {"factor: background", "factor: foreground", "active selective channels"} <= {
        c["name"] for c in bundle["colourings"]}
    for name in ("t-SNE", "PCA"):
        xy = np.stack([unpacked(bundle["maps"][name][axis]) for axis in "xy"])
        assert np.isfinite(xy).all() and xy.std(axis=1).min() > 0, name
    assert len(bundle["samples"]) == 3 and all(len(s["images"]) == 2 for s in bundle["samples"])
    # The explorer's graph agrees with rule `neighbours` on that rule's queries, in φ and in pixels.
    queries = pd.read_parquet(tiny_explorer / "clusters/neighbours.parquet")
    for space, file in (("φ σ=0.1", "phi-s0.1"), ("pixels", "pixels")):
        graph = pd.read_parquet(tiny_explorer / f"explorer/neighbours/{file}.parquet")
        for query, rows in queries[queries.space == space].groupby("query"):
            expected = graph[graph.key == query].sort_values("rank").neighbour.tolist()[:len(rows)]
            assert rows.sort_values("rank").neighbour.tolist() == expected, (space, query)
    html = (tiny_explorer / "explorer.html").read_text()
    external = re.findall(r'<(?:script|link|img)\b[^>]*\b(?:src|href)="(?!data:)[^"]*"', html)
    assert not external, f"the page loads {external}: it must work offline"


@pytest.fixture(scope="module")
def browser():
    from browser import find_chromedriver, find_chromium, selenium_chromium

    conftest.debian_packages(["chromium", "chromium-driver"], lambda: find_chromium() and find_chromedriver(),
                             "the explorer in a browser")
    with selenium_chromium(1500, 1000) as driver:
        yield driver


def test_clicking_a_point_shows_the_workflows_neighbours_and_a_colouring_changes_the_legend(
        browser, tiny_explorer, tmp_path):
    from selenium.webdriver.common.by import By

    import explorer_screenshots as page

    page.open_page(browser, tiny_explorer / "explorer.html")
    label_legend = page.colour_by(browser, "label")
    assert "flat/disk" in label_legend or "gradient/disk" in label_legend, label_legend
    key = page.click_point(browser, page.isolated_point(browser))
    for space in ("phi-s0.1", "untrained-s0.1", "pixels"):
        graph = pd.read_parquet(tiny_explorer / f"explorer/neighbours/{space}.parquet")
        expected = graph[graph.key == key].sort_values("rank").neighbour.tolist()
        assert page.panel_keys(browser, space) == expected, space
    # Search by key: that image is chosen; by label: its images are listed.
    other = pd.read_parquet(tiny_explorer / "explorer/neighbours/pixels.parquet").key.iloc[-1]
    page.search(browser, other)
    assert browser.execute_script("return document.body.dataset.selected") == other
    label = pd.read_parquet(tiny_explorer / "manifest.parquet").set_index("key").label_name[other]
    page.search(browser, label)
    assert browser.find_element(By.ID, "found").text.startswith(f"label {label}: ")
    cluster_legend = page.colour_by(browser, "cluster k=4")
    assert cluster_legend != label_legend and cluster_legend.startswith("cluster k=4")
    page.settle(browser)
    shot = tmp_path / "explorer.png"
    browser.save_screenshot(str(shot))
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.std() > 10
    print(f"\nscreenshot of the tiny run's explorer, {key} clicked: {shot}")


def test_semcore_explore_builds_a_missing_page_with_snakemake_and_finds_it(finished_run, capsys):
    from semcore import cli

    run = finished_run / "results" / "tiny"
    page = run / "explorer.html"
    kept = page.read_bytes()
    page.unlink()
    try:
        cli.main(["explore", str(run), "--no-open", "--cores", "2"])
        assert capsys.readouterr().out.strip() == str(page) and page.stat().st_size > 100_000
    finally:
        page.write_bytes(kept)  # the other tests see the run as it was
    with pytest.raises(SystemExit, match="no explorer.html and no config.yaml"):
        cli.main(["explore", str(finished_run / "results"), "--no-open"])
