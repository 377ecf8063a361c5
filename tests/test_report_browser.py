"""The Snakemake report in headless Chromium: each study's claims and the overview are readable
on the page, not downloads.

The report is built from the whole tiny run that the workflow tests share (`tiny_run` in
conftest.py): a report needs the jobs' metadata, so it must come from a real run.
"""

import shutil
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("selenium", reason="the report's browser test needs the test extra's selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from robustflow.claims_html import OVERVIEW_CATEGORY, STUDY_TITLES, claims_page_path
from robustflow.studies import STUDIES
from tests.test_workflow import snakemake


def chromium_and_driver() -> tuple[str, str]:
    """Paths of a Chromium and its chromedriver (Debian's packages, or any on PATH)."""
    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver") or next(
        (path for path in ("/usr/lib/chromium/chromedriver",) if Path(path).exists()), None)
    if not browser or not driver:
        pytest.skip(f"headless Chromium not found (browser: {browser}, chromedriver: {driver}); "
                    "install Debian's chromium and chromium-driver")
    return browser, driver


@pytest.fixture(scope="module")
def browser():
    binary, driver_path = chromium_and_driver()
    options = Options()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def claims_report(tiny_run) -> Path:
    """The report of the whole tiny run (figures, claims pages, overview), as `snakemake --report` builds it."""
    chromium_and_driver()
    snakemake(tiny_run, "--report", "results/report.html", "--configfile", str(tiny_run / "override.yaml"))
    return tiny_run


def open_category(browser, report: Path, category: str) -> str:
    """Open the report's ``category``, view its claims page; the page's visible text."""
    browser.get(report.as_uri())
    wait = WebDriverWait(browser, 20)
    wait.until(expected_conditions.element_to_be_clickable(
        (By.XPATH, f"//a[span[normalize-space()='{category}']]"))).click()
    row = wait.until(expected_conditions.presence_of_element_located(
        (By.XPATH, "//tbody/tr[td[normalize-space()='claims' or normalize-space()='every claim']]")))
    view = row.find_element(By.XPATH, ".//a[@iconname='eye']")
    assert view.get_dom_attribute("download") is None, f"{category}: the claims page is a download"
    view.click()
    browser.switch_to.frame(wait.until(expected_conditions.presence_of_element_located((By.TAG_NAME, "iframe"))))
    text = browser.find_element(By.TAG_NAME, "body").text
    browser.switch_to.default_content()
    return text


@pytest.mark.workflow
@pytest.mark.parametrize("section", STUDIES)
def test_each_study_s_claims_are_visible_in_its_category(browser, claims_report, section):
    claims = pd.read_csv(claims_report / claims_page_path(section).replace(".html", ".csv"))
    text = open_category(browser, claims_report / "results" / "report.html", STUDY_TITLES[section])
    for claim in claims.itertuples():
        assert claim.statement in text and claim.claim_id in text, claim.claim_id
    assert claims["verdict"].iloc[0] in text


@pytest.mark.workflow
def test_the_overview_lists_the_claims_of_every_study(browser, claims_report):
    text = open_category(browser, claims_report / "results" / "report.html", OVERVIEW_CATEGORY)
    for section in STUDIES:
        claims = pd.read_csv(claims_report / claims_page_path(section).replace(".html", ".csv"))
        assert STUDY_TITLES[section] in text
        assert claims["statement"].iloc[0] in text, section
