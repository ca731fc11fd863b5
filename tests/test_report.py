"""`digits report` and `digits compare`: complete, self-contained pages, or one clear error and no files.

Two tiny runs are trained once for the module (2,000 images, 2 epochs).  The
browser tests open the pages in headless Chromium through Playwright and
fail on any console error or any request beyond the page itself; they are
skipped only where Chromium is missing and CI is not "true".
"""

from __future__ import annotations

import base64
import html.parser
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digits.cli import main
from digits.errors import DigitsError
from digits.plots import png_size
from digits.report import write_comparison, write_report
from helpers import CHROMIUM, CHROMIUM_ARGS, require_browser

REPORT_FIGURES = {  # plots/NAME.png -> its fixed size in pixels
    "samples": (906, 410),
    "curves": (1000, 400),
    "confusion": (1020, 600),
    "per_class": (1000, 420),
    "mistakes": (888, 620),
    "predictions": (1000, 562),
}
SECTIONS = ("summary", "samples", "curves", "confusion", "per-class", "mistakes", "predictions",
            "model", "config")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist_dir):
    from digits.training import train

    root = tmp_path_factory.mktemp("runs")
    a = train(model="mlp", limit=2000, epochs=2, seed=1, out=root / "mlp", data_dir=mnist_dir, verbose=0)
    b = train(model="mlp2", limit=2000, epochs=2, seed=1, out=root / "mlp2", data_dir=mnist_dir, verbose=0)
    return a, b


@pytest.fixture(scope="module")
def report(runs, mnist_dir, tmp_path_factory):
    """A copy of the first run with its report written into it, the default place."""
    run = tmp_path_factory.mktemp("reported") / "mlp"
    shutil.copytree(runs[0].path, run)
    return write_report(run, data_dir=mnist_dir)


def png_pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `folder` (hidden ones too) with its size and mtime."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


class References(html.parser.HTMLParser):
    """Collects every attribute that can load or link something, and every tag name."""

    def __init__(self):
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.tags: set[str] = set()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        for name, value in attrs:
            if name == "id":
                self.ids.add(value)
            if name in ("src", "href", "srcset", "action", "poster", "data", "background", "xlink:href"):
                self.urls.append((tag, name, value or ""))


def check_self_contained(page: str) -> References:
    refs = References()
    refs.feed(page)
    assert not refs.tags & {"script", "link", "iframe", "object", "embed", "base"}
    for tag, name, url in refs.urls:
        if tag == "img":
            assert name == "src" and url.startswith("data:image/png;base64,"), url[:60]
        else:
            assert tag == "a" and url.startswith("#") and url[1:] in refs.ids, url
    lowered = page.lower()
    assert "url(" not in lowered and "@import" not in lowered and "@font-face" not in lowered
    return refs


def embedded_pngs(page: str) -> list[bytes]:
    refs = References()
    refs.feed(page)
    return [base64.b64decode(url.split(",", 1)[1]) for tag, _, url in refs.urls if tag == "img"]


# --------------------------------------------------------------------------- the run report


def test_report_writes_every_figure_with_its_size_and_not_blank(report):
    assert report.name == "report.html" and report.is_file()
    plots_dir = report.parent / "plots"
    for name, size in REPORT_FIGURES.items():
        png = (plots_dir / f"{name}.png").read_bytes()
        assert png_size(png) == size, name
        assert png_pixels(png).std() > 10, f"{name}.png is blank"
    leftovers = [p.name for p in report.parent.rglob(".*")]
    assert leftovers == [], f"temporary files left behind: {leftovers}"


def test_report_is_self_contained_and_complete(report, runs):
    page = report.read_text(encoding="utf-8")
    refs = check_self_contained(page)
    assert set(SECTIONS) <= refs.ids
    embedded = embedded_pngs(page)
    files = [(report.parent / "plots" / f"{name}.png").read_bytes() for name in REPORT_FIGURES]
    assert embedded == files  # the page shows exactly the figures written beside it, in order
    metrics = runs[0].metrics
    assert f"{metrics['test_accuracy'] * 100:.2f}%" in page  # the headline number
    assert f"{metrics['parameters']:,}" in page
    for text in ("Training samples", "Learning curves", "Confusion matrix", "Precision", "Recall",
                 "Mistakes", "Predictions", "Model", "Configuration", "probabilities", "Flatten",
                 "learning_rate"):
        assert text in page, text


def test_report_can_go_elsewhere(runs, mnist_dir, tmp_path):
    before = snapshot(runs[0].path)
    path = write_report(runs[0].path, out=tmp_path / "elsewhere", data_dir=mnist_dir)
    assert path == tmp_path / "elsewhere" / "report.html" and path.is_file()
    assert sorted(p.name for p in (path.parent / "plots").iterdir()) == sorted(
        f"{n}.png" for n in REPORT_FIGURES)
    assert snapshot(runs[0].path) == before  # the run itself is untouched


# --------------------------------------------------------------------------- the comparison


@pytest.fixture(scope="module")
def comparison(runs, tmp_path_factory):
    return write_comparison([r.path for r in runs], out=tmp_path_factory.mktemp("compare"))


def test_comparison_table_and_curves(comparison, runs):
    assert comparison.name == "compare.html"
    curves = (comparison.parent / "compare-curves.png").read_bytes()
    assert png_size(curves) == (1000, 760)
    assert png_pixels(curves).std() > 10
    page = comparison.read_text(encoding="utf-8")
    check_self_contained(page)
    assert embedded_pngs(page) == [curves]
    for header in ("model", "parameters", "epochs", "training time", "test accuracy", "test loss"):
        assert f">{header}</th>" in page, header
    for run in runs:
        m = run.metrics
        assert run.path.name in page
        assert f"{m['parameters']:,}" in page
        assert f"{m['test_accuracy'] * 100:.2f}%" in page
        assert f"{m['test_loss']:.4f}" in page


def test_comparison_needs_two_distinct_runs(runs, tmp_path):
    with pytest.raises(DigitsError, match="at least two"):
        write_comparison([runs[0].path], out=tmp_path)
    with pytest.raises(DigitsError, match="given twice"):
        write_comparison([runs[0].path, runs[0].path], out=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_comparison_into_a_file_fails_cleanly(runs, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(DigitsError, match="not-a-folder"):
        write_comparison([r.path for r in runs], out=blocker)
    (tmp_path / "out" / "compare.html").mkdir(parents=True)  # the last rename would fail
    with pytest.raises(DigitsError, match="compare.html"):
        write_comparison([r.path for r in runs], out=tmp_path / "out")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "not-a-folder", "out", "out/compare.html"]


# --------------------------------------------------------------------------- broken runs


def _remove(name):
    return lambda run: (run / name).unlink()


def _overwrite(name, data: bytes):
    return lambda run: (run / name).write_bytes(data)


def _truncate(name, keep: int):
    return lambda run: (run / name).write_bytes((run / name).read_bytes()[:keep])


BROKEN = {
    "missing model.keras": (_remove("model.keras"), "model.keras"),
    "missing config.json": (_remove("config.json"), "config.json"),
    "missing metrics.json": (_remove("metrics.json"), "metrics.json"),
    "binary history.csv": (_overwrite("history.csv", b"\x00\xff\xfe garbage \x00\x01"), "history.csv"),
    "non-numeric history.csv": (_overwrite("history.csv", b"epoch,loss\n0,oops\n"), "history.csv"),
    "empty history.csv": (_overwrite("history.csv", b""), "history.csv"),
    "corrupt config.json": (_overwrite("config.json", b'{"model": "mlp",'), "config.json"),
    "config.json not an object": (_overwrite("config.json", b"[1, 2]"), "config.json"),
    "metrics.json without accuracy": (_overwrite("metrics.json", b'{"test_loss": 0.1}'), "metrics.json"),
    "corrupt model.keras": (_truncate("model.keras", 1000), "model.keras"),
}


def make_broken(runs, tmp_path: Path, case: str) -> tuple[Path, str]:
    """A copy of a good run with one file missing or damaged, and the name of that file."""
    run = tmp_path / "broken-run"
    shutil.copytree(runs[0].path, run)
    breaker, name = BROKEN[case]
    breaker(run)
    return run, name


@pytest.mark.parametrize("case", list(BROKEN))
def test_report_on_a_broken_run_names_the_file_and_writes_nothing(case, runs, tmp_path, mnist_dir):
    run, name = make_broken(runs, tmp_path, case)
    before = snapshot(run)
    with pytest.raises(DigitsError) as caught:
        write_report(run, data_dir=mnist_dir)
    message = str(caught.value)
    assert name in message and "\n" not in message
    assert snapshot(run) == before


@pytest.mark.parametrize("case", [c for c in BROKEN if c != "corrupt model.keras"])  # compare reads no model
def test_compare_with_a_broken_run_names_the_file_and_writes_nothing(case, runs, tmp_path):
    run, name = make_broken(runs, tmp_path, case)
    out = tmp_path / "comparison"
    with pytest.raises(DigitsError) as caught:
        write_comparison([runs[1].path, run], out=out)
    assert name in str(caught.value)
    assert not out.exists()


# --------------------------------------------------------------------------- the commands


def test_cli_report_and_compare(runs, tmp_path, mnist_dir, capsys):
    assert main(["report", str(runs[1].path), "--out", str(tmp_path / "r"),
                 "--data-dir", str(mnist_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "r" / "report.html")
    assert main(["compare", str(runs[0].path), str(runs[1].path), "--out", str(tmp_path / "c")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "c" / "compare.html")
    assert (tmp_path / "c" / "compare-curves.png").is_file()


def test_cli_compare_defaults_to_the_runs_folder(runs, tmp_path, capsys):
    copies = []
    for run in runs:
        copies.append(tmp_path / run.path.name)
        shutil.copytree(run.path, copies[-1])
    assert main(["compare", *map(str, copies)]) == 0
    assert Path(capsys.readouterr().out.strip()) == (tmp_path / "compare.html").resolve()


def test_cli_errors_are_one_line(runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs[0].path, run)
    (run / "history.csv").write_bytes(b"\x00")
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "history.csv" in err and err.startswith("digits report: error:")
    assert main(["compare", str(runs[0].path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at least two" in err
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "no such run directory" in capsys.readouterr().err


# --------------------------------------------------------------------------- in a browser


@pytest.fixture(scope="module")
def browser():
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(browser, page_path: Path, screenshot: Path) -> dict:
    """Open a page from file://, screenshot it whole; report console messages and requests."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    seen = {"console": [], "errors": [], "requests": [], "failed": []}
    page.on("console", lambda m: seen["console"].append((m.type, m.text)))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.on("requestfailed", lambda r: seen["failed"].append(r.url))
    url = page_path.resolve().as_uri()
    response = page.goto(url, wait_until="load")
    assert response is None or response.ok
    seen["images"] = page.evaluate(
        "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    seen["width"] = page.evaluate("document.documentElement.scrollWidth")
    page.screenshot(path=str(screenshot), full_page=True)
    page.close()
    seen["url"] = url
    return seen


def check_browser_view(seen: dict, screenshot: Path, n_images: int) -> None:
    assert [m for m in seen["console"] if m[0] in ("error", "warning")] == []
    assert seen["errors"] == [] and seen["failed"] == []
    others = [u for u in seen["requests"] if u != seen["url"] and not u.startswith("data:")]
    assert others == [], f"the page loaded something besides itself: {others}"
    assert len(seen["images"]) == n_images
    assert all(done and w > 0 and h > 0 for done, w, h in seen["images"]), seen["images"]
    assert seen["width"] <= 1280, "the page scrolls sideways"
    shot = Image.open(screenshot)
    assert shot.size[0] == 1280 and shot.size[1] > 900
    assert np.asarray(shot.convert("L"), dtype=np.float64).std() > 10, "the screenshot is blank"


def test_report_opens_in_chromium(browser, report, tmp_path):
    screenshot = tmp_path / "report.png"
    seen = open_page(browser, report, screenshot)
    check_browser_view(seen, screenshot, n_images=len(REPORT_FIGURES))


def test_comparison_opens_in_chromium(browser, comparison, tmp_path):
    screenshot = tmp_path / "compare.png"
    seen = open_page(browser, comparison, screenshot)
    check_browser_view(seen, screenshot, n_images=1)
