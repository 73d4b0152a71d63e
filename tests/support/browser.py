"""Debian's Chromium through Playwright, as every browser test uses it."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def shoot(page, folder: Path, name: str) -> None:
    """A full-page screenshot kept as a test artifact."""
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def sign_in(page, base: str, username: str, password: str) -> None:
    """Through the login form, as a person does; fails unless signed in."""
    from playwright.sync_api import expect

    page.goto(base + "/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    assert "/login" not in page.url
