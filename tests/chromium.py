"""Open a page in a real headless Chromium (the system package, driven by Playwright) and report what a reader
would see: console errors, failed loads, and whether every image decoded. `make browser` installs Chromium."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str:
    """The system Chromium ($PREFGEN_CHROMIUM first), or skip the test and say how to get one."""
    found = os.environ.get("PREFGEN_CHROMIUM") or next(filter(None, map(shutil.which, _NAMES)), None)
    if not found:
        pytest.skip("no chromium binary on PATH (run `make browser`, or set PREFGEN_CHROMIUM)")
    return found


@dataclass
class Rendered:
    console_errors: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)  # alt, naturalWidth, naturalHeight, complete
    title: str = ""
    screenshot: Path | None = None


def render(page_path: Path, screenshot_name: str) -> Rendered:
    """Load `page_path` from file://, wait for it, and keep a full-page screenshot in test-artifacts/."""
    from playwright.sync_api import sync_playwright

    result = Rendered()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: result.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: result.console_errors.append(f"page error: {exc}"))
            page.on("requestfailed", lambda r: result.console_errors.append(f"failed to load {r.url[:80]}"))
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            result.title = page.title()
            result.images = page.evaluate(
                "[...document.images].map(i => ({alt: i.alt, naturalWidth: i.naturalWidth,"
                " naturalHeight: i.naturalHeight, complete: i.complete}))"
            )
            ARTIFACTS.mkdir(exist_ok=True)
            result.screenshot = ARTIFACTS / screenshot_name
            page.screenshot(path=str(result.screenshot), full_page=True)
            print(f"screenshot kept at {result.screenshot}")
        finally:
            browser.close()
    return result
