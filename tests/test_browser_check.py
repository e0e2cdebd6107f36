"""Browser tier: the headless-Chromium checker itself sees broken images and console errors.

Without this, a checker that silently saw nothing would pass every report. Each test opens a
small hand-written page (seconds each); tests/test_report_e2e.py uses the same checker on
real run reports.
"""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image
from support.browser_check import check_page, find_chromium

pytestmark = pytest.mark.browser


def _png_uri(color: str) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(autouse=True)
def _needs_chromium():
    # Fail, do not skip: `make test` is the full suite and CI installs chromium (.ci/run).
    if find_chromium() is None:
        pytest.fail("no chromium on PATH: install Debian's chromium (`.ci/run --services-only` does)")


def test_a_clean_page_has_every_image_rendered_and_no_errors(tmp_path):
    page = tmp_path / "clean.html"
    page.write_text(
        f"<html><head><title>clean</title></head><body><h1>ok</h1><img alt=a src='{_png_uri('red')}'>"
        f"<img alt=b src='{_png_uri('blue')}'></body></html>"
    )
    result = check_page(page, tmp_path / "clean.png")
    print(result.describe())
    assert result.title == "clean"
    assert len(result.images) == 2 and not result.broken_images, result.describe()
    assert [i["naturalWidth"] for i in result.images] == [40, 40]
    assert not result.console_errors and not result.failed_requests, result.describe()
    with Image.open(result.screenshot) as shot:
        assert shot.format == "PNG" and shot.width > 100 and shot.height > 30


def test_broken_images_and_console_errors_are_reported(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(
        "<html><body>"
        f"<img alt=good src='{_png_uri('green')}'>"
        "<img alt=corrupt src='data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA'>"
        "<img alt=missing src='no-such-plot.png'>"
        "<script>console.error('plot failed'); undefinedFunction();</script>"
        "</body></html>"
    )
    result = check_page(page, None)
    print(result.describe())
    assert sorted(i["alt"] for i in result.broken_images) == ["corrupt", "missing"], result.describe()
    text = "\n".join(result.console_errors)
    assert "plot failed" in text and "undefinedFunction" in text, result.describe()
    seen = result.console_errors + result.failed_requests
    assert any("no-such-plot.png" in e or "ERR_FILE_NOT_FOUND" in e for e in seen), result.describe()
