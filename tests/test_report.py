"""The report's claims pages: HTML rendering of judged claims tables, and the overview."""

import subprocess
import sys

import pandas as pd
import pytest

from robustflow.claims import Claim, judge, verdict_table
from robustflow.claims_html import (
    NEUTRAL,
    STUDY_TITLES,
    VERDICT_COLOURS,
    claims_html,
    claims_overview,
    claims_page,
    claims_page_path,
    overview_table,
)
from robustflow.jobs import files
from robustflow.stats import mean_ci
from robustflow.studies import STUDIES

CLAIM = Claim("ce_top1", "source 000", "CE reaches <90%> top-1", "top1", 0.9, "value", rel_tol=0.01)


def judged_table() -> pd.DataFrame:
    """One row of every verdict `judge` gives, from real measurements."""
    return verdict_table([
        judge(CLAIM, [0.89, 0.9, 0.91], comparable=True),
        judge(Claim("margin_top1", "source 000", "margin beats CE", "top1", 0.5, "value", rel_tol=0.01),
              [0.89, 0.9, 0.91], comparable=True),
        judge(Claim("snr", "source 000", "SNR is 3", "snr", 3.0, "value"), [2.0], comparable=True),
        judge(Claim("cifar_top1", "source 002", "95% on CIFAR-10", "top1", 0.95, "value"), [0.5, 0.6],
              comparable=False, reason="measured on digits, not CIFAR-10"),
    ])


def verdict_cells(page: str) -> dict[str, str]:
    """Verdict -> the style of its cell, read back from the page."""
    cells = {}
    for chunk in page.split('<td class="verdict" data-verdict="')[1:]:
        verdict, rest = chunk.split('"', 1)
        cells[verdict] = rest.split('style="', 1)[1].split('"', 1)[0]
    return cells


def test_every_verdict_is_shown_in_its_own_colour_with_its_reason_and_interval():
    table = judged_table()
    page = claims_html(table, "Claims of source 000")
    cells = verdict_cells(page)
    assert set(cells) == set(table["verdict"]) == {"reproduced", "not reproduced", "inconclusive", "not comparable"}
    for verdict, style in cells.items():
        assert VERDICT_COLOURS[verdict][0] in style, verdict
    assert len(set(cells.values())) == len(cells)  # no two verdicts look alike
    assert "measured on digits, not CIFAR-10" in page and "lies inside the interval" in page
    mean, low, high = mean_ci([0.89, 0.9, 0.91], confidence=0.95)
    assert f"{mean:.4g} [{low:.4g}, {high:.4g}] (n=3)" in page  # mean [95% t-interval] (n)
    assert "2 (n=1)" in page  # one measurement: no interval
    assert "CE reaches &lt;90%&gt; top-1" in page  # statements are text, not markup


def test_every_verdict_has_its_own_colour_and_an_unknown_one_is_shown_neutrally():
    from robustflow.claims import VERDICTS
    from robustflow.claims_html import VERDICT_COLOURS

    assert set(VERDICT_COLOURS) == set(VERDICTS) and NEUTRAL not in VERDICT_COLOURS.values()
    table = judged_table().assign(verdict="a verdict added later")
    cells = verdict_cells(claims_html(table, "Claims"))
    assert cells == {"a verdict added later": f"background: {NEUTRAL[0]}; color: {NEUTRAL[1]}"}


def test_a_table_without_verdicts_is_rejected_naming_the_column():
    with pytest.raises(ValueError, match="verdict"):
        claims_html(judged_table().drop(columns="verdict"), "Claims")


def test_the_overview_lists_every_study_s_claims_under_its_report_title():
    tables = {"loss_study": judged_table(), "background_study": judged_table().head(2)}
    overview = overview_table(tables)
    assert list(overview.columns)[0] == "study"
    assert overview["study"].tolist() == ["Loss study"] * 4 + ["Background study"] * 2
    assert overview.drop(columns="study").equals(pd.concat(tables.values(), ignore_index=True))
    with pytest.raises(ValueError, match="at least one"):
        overview_table({})


def test_the_steps_write_the_pages_from_the_claims_csvs(tmp_path):
    judged_table().to_csv(tmp_path / "loss_claims.csv", index=False)
    page = tmp_path / "loss_claims.html"
    claims_page({}, {}, files(claims=tmp_path / "loss_claims.csv"), files(page=page))
    text = page.read_text()
    assert "<title>Claims of source 000, source 002</title>" in text and "inconclusive" in text
    outputs = files(table=tmp_path / "overview.csv", page=tmp_path / "overview.html")
    claims_overview({}, {}, {"loss_study": tmp_path / "loss_claims.csv"}, outputs)
    overview = pd.read_csv(outputs.table)
    assert set(overview["study"]) == {"Loss study"} and len(overview) == 4
    assert "Loss study" in outputs.page.read_text()


def test_every_study_has_a_report_title_and_a_page_beside_its_tables():
    assert set(STUDY_TITLES) == set(STUDIES)
    assert claims_page_path("learning_rule_study") == "results/tables/learning_rule_claims.html"


def test_the_rules_can_import_the_module_without_pandas_or_torch():
    """rules/common.smk imports it while the DAG is built, in every cluster job too."""
    code = "import sys, robustflow.claims_html; print(sorted({'pandas', 'torch', 'matplotlib'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
