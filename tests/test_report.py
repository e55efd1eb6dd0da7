"""The Snakemake report of the session's tiny run: one HTML file naming every category, in the order of the
analysis, and every figure and table of the run; rendered by headless Chromium, it is not blank.

Chromium is installed with apt-get when missing (root and apt-get needed; Debian's package). Where it
cannot be, the rendering test is skipped saying why; where CI is set, it fails instead.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import conftest
from conftest import REPO, snakemake

CATEGORIES = ["Data", "Training", "Sparsity", "Stability", "Selectivity", "Subspaces", "Semantics", "Emergence",
              "Sampling", "Findings", "Explorer"]
SCREENSHOTS = REPO / "benchmarks" / "report_screenshots.py"


@pytest.fixture(scope="module")
def report(finished_run, tmp_path_factory) -> Path:
    """The report, outside the shared run's folder: the other tests see the run as it was."""
    path = tmp_path_factory.mktemp("report") / "report.html"
    snakemake(finished_run, "--report", str(path))
    return path


def test_report_names_every_category_and_figure(report, finished_run):
    text = report.read_text(encoding="utf-8")
    # Numbered, so that the report's alphabetical menu lists them in the order of the analysis.
    for i, name in enumerate(CATEGORIES, 1):
        assert f'"{i:02d} {name}"' in text, f"category {name} missing from the report"
    results = finished_run / "results" / "tiny"
    shown = sorted([*(results / "figures").rglob("*.png"), *(results / "tables").glob("*.html"),
                    results / "findings.html"])
    assert len(shown) > 15
    missing = [str(path.relative_to(results)) for path in shown if f'"name": "{path.name}"' not in text]
    assert not missing, f"in the run, not in the report: {missing}"


@pytest.fixture(scope="module")
def chromium():
    """Chromium, installed with apt-get (Debian's package) when missing."""
    sys.path.insert(0, str(SCREENSHOTS.parent))
    from browser import find_chromium

    conftest.debian_packages(["chromium"], lambda: find_chromium() is not None, "report rendering")
    return find_chromium()


def test_report_renders_in_chromium(chromium, report, tmp_path):  # chromium first: a skip needs no run
    """The start page and the first category, as a person opens them: the app ran and drew something."""
    subprocess.run([sys.executable, str(SCREENSHOTS), str(report), str(tmp_path), "--pages", "2"], check=True,
                   timeout=600)
    shots = sorted(tmp_path.glob("*.png"))
    assert [shot.name for shot in shots] == ["00-start.png", "01-category-01-data.png"]
    pixels = [np.asarray(Image.open(shot).convert("L"), dtype=np.float32) for shot in shots]
    for shot, image in zip(shots, pixels):
        assert image.std() > 10, f"{shot.name} is blank (pixel std {image.std():.1f})"
    assert np.abs(pixels[0] - pixels[1]).mean() > 1, "opening a category changed nothing on the page"
