"""The console in a real browser: Debian's chromium driven by Playwright, against `equilibrate dashboard`.

Every page loads without a Streamlit exception box, the risk queue filters, and an approval in the
Intervention center produces an audit row. Screenshots go to SCREENSHOT_DIR when it is set (the README's
are made this way), else to the test's temporary directory.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from equilibrate.alert.audit_log import AuditLog
from equilibrate.alert.cases import CaseStore
from equilibrate.ops.net import free_port
from equilibrate.risk.keys import level_index
from tests.conftest import settings_env
from tests.dashboard.conftest import Bank
from tests.processes import wait_until

CHROMIUM = "/usr/bin/chromium"
PAGES = {"": "Operations hub", "portfolio": "Portfolio", "queue": "Risk queue", "customer": "Customer profile",
         "interventions": "Intervention center", "audit": "Audit log", "model": "Model"}  # fmt: skip

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (scripts/setup.sh dev)")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:  # noqa: S310  # our own local URL
            return bool(answer.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def console(bank: Bank, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("dashboard") / "dashboard.log"
    env = {**os.environ, **settings_env(bank.settings), "DASHBOARD_REFRESH_S": "3600"}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "equilibrate", "dashboard", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _healthy(url), 60, f"the console at {url} ({log})")
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    yield tab
    context.close()


def _screenshots(tmp_path: Path) -> Path:
    target = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


def _settled(page: Page) -> None:
    """Wait until Streamlit has finished running the page's script."""
    page.wait_for_selector('[data-testid="stAppViewContainer"]')
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')"
    )
    page.wait_for_timeout(500)


def test_every_page_loads_without_an_exception(console: str, page: Page, tmp_path: Path) -> None:
    shots = _screenshots(tmp_path)
    for path, title in PAGES.items():
        page.goto(f"{console}/{path}")
        page.get_by_role("heading", name=title).first.wait_for()
        _settled(page)
        assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
            '[data-testid="stException"]'
        ).first.inner_text()
        page.screenshot(path=str(shots / f"{path or 'home'}.png"), full_page=True)


def test_the_risk_queue_filters(console: str, page: Page, bank: Bank) -> None:
    page.goto(f"{console}/queue")
    caption = page.get_by_text(re.compile(r"customers match"))
    caption.wait_for()
    assert caption.inner_text().startswith(f"{bank.redis.zcard('eq:risk:queue'):,} customers match")
    page.get_by_test_id("stMultiSelect").first.click()
    page.get_by_role("option", name="HIGH").click()
    high = int(bank.redis.scard(level_index("HIGH")))
    page.get_by_text(f"{high:,} customers match").wait_for()
    _settled(page)
    assert page.locator('[data-testid="stException"]').count() == 0


def test_an_approval_in_the_intervention_center_produces_an_audit_row(console: str, page: Page, bank: Bank) -> None:
    case_id = bank.cases[2]
    page.goto(f"{console}/interventions?case={case_id}")
    page.get_by_role("heading", name=re.compile(case_id)).wait_for()
    operator = page.get_by_label("Operator id")
    operator.fill("carol")
    operator.press("Enter")
    approve = page.get_by_role("button", name="Approve and send")
    wait_until(approve.is_enabled, 30, "the approve button to enable")
    approve.click()
    page.get_by_text("Approved: the engine checks the contact policy again").wait_for()
    assert (CaseStore(bank.redis).get(case_id) or {})["state"] == "approved"
    rows = [r.record for r in AuditLog(bank.settings.data_dir).rows() if r.record.case_id == case_id]
    assert rows[-1].action == "approved" and rows[-1].actor == "ops:carol"
