"""The claims tables as HTML pages for the Snakemake report, which shows an ``.html`` item in
its viewer (a CSV item is only a download).

A page is one table: each claim's id and statement, its source and metric, the claimed value,
the measured mean with its 95% interval and n, the verdict (coloured) and the reason for it.
Verdicts the palette does not know (a new one added to `robustflow.claims.judge`) are shown in
a neutral colour, never dropped. The overview page stacks every enabled study's table.

Imports no torch or matplotlib (pandas only, inside the functions that need it): the rules file
imports this module while Snakemake builds the DAG.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from robustflow.io import atomic_path

if TYPE_CHECKING:
    import pandas as pd

# The report's category of each study: the same words as the study's rules file uses.
STUDY_TITLES = {
    "loss_study": "Loss study",
    "learning_rule_study": "Learning-rule study",
    "architecture_study": "Architecture study",
    "background_study": "Background study",
    "repeatability_study": "Repeatability study",
}
OVERVIEW_CATEGORY = "Claims overview"
# (background, text) per verdict; anything else gets NEUTRAL.
VERDICT_COLOURS = {
    "reproduced": ("#c8e6c9", "#1b5e20"),
    "not reproduced": ("#ffcdd2", "#b71c1c"),
    "inconclusive": ("#fff3c4", "#7a5c00"),
    "not comparable": ("#e0e0e0", "#424242"),
    "not testable at this scale": ("#e8dcf4", "#4a148c"),
}
NEUTRAL = ("#e3eaf2", "#263238")
REQUIRED = ("claim_id", "source", "statement", "metric", "claimed", "measured_mean", "ci_low",
            "ci_high", "n", "verdict", "reason")
STYLE = """
body { font-family: system-ui, sans-serif; font-size: 14px; margin: 1em; color: #212121; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; }
th, td { border: 1px solid #bdbdbd; padding: 4px 6px; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; }
th { background: #eceff1; position: sticky; top: 0; }
td.number { font-variant-numeric: tabular-nums; }
td.verdict { font-weight: 600; }
.claim-id { font-family: monospace; font-size: 12px; color: #546e7a; }
"""


def claims_page_path(section: str) -> str:
    """Where the report's page of the study ``section``'s claims is written (its tables' prefix)."""
    return f"results/tables/{section.removesuffix('_study')}_claims.html"


def verdict_colours(verdict: str) -> tuple[str, str]:
    """(background, text) colour of ``verdict``; neutral for a verdict without its own colour."""
    return VERDICT_COLOURS.get(verdict, NEUTRAL)


def _number(value) -> str:
    value = float(value)
    return "n/a" if math.isnan(value) else f"{value:.4g}"


def _measured(row) -> str:
    """Mean, 95% interval and n: "0.91 [0.88, 0.94] (n=3)"; the interval is absent below n=2."""
    interval = "" if math.isnan(float(row.ci_low)) else f" [{_number(row.ci_low)}, {_number(row.ci_high)}]"
    return f"{_number(row.measured_mean)}{interval} (n={int(row.n)})"


def _row(row, with_study: bool) -> str:
    background, text = verdict_colours(str(row.verdict))
    cells = [f"<td>{html.escape(str(row.study))}</td>"] if with_study else []
    cells += [
        f'<td><span class="claim-id">{html.escape(str(row.claim_id))}</span><br>{html.escape(str(row.statement))}</td>',
        f'<td class="verdict" data-verdict="{html.escape(str(row.verdict))}" '
        f'style="background: {background}; color: {text}">{html.escape(str(row.verdict))}</td>',
        f"<td>{html.escape(str(row.reason))}</td>",
        f'<td class="number">{_measured(row)}</td>',
        f'<td class="number">{_number(row.claimed)}</td>',
        f"<td>{html.escape(str(row.metric))}</td>",
        f"<td>{html.escape(str(row.source))}</td>",
    ]
    return "<tr>" + "".join(cells) + "</tr>"


def claims_html(table: pd.DataFrame, title: str) -> str:
    """A standalone HTML page of a claims table (`robustflow.claims.COLUMNS`; a ``study`` column
    too, when there is one, as in the overview)."""
    missing = [column for column in REQUIRED if column not in table.columns]
    if missing:
        raise ValueError(f"claims table {title!r} lacks columns {missing}")
    with_study = "study" in table.columns
    # The verdict and its reason next to the claim, so they are read without scrolling sideways.
    columns = [("study", 8)] * with_study + [("claim", 20), ("verdict", 10), ("reason", 28),
                                             ("measured mean [95% CI] (n)", 12), ("claimed", 6), ("metric", 10),
                                             ("source", 6)]
    head = "".join(f'<th style="width: {width}%">{heading}</th>' for heading, width in columns)
    body = "\n".join(_row(row, with_study) for row in table.itertuples(index=False))
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head>\n<body><h1>{html.escape(title)}</h1>\n"
            f"<table><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>\n</body></html>\n")


def overview_table(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Every claim of every study, the study (its report title) first, in the studies' order."""
    import pandas as pd

    frames = [table.assign(study=STUDY_TITLES.get(section, section)) for section, table in tables.items()]
    if not frames:
        raise ValueError("the claims overview needs at least one enabled study's claims table")
    overview = pd.concat(frames, ignore_index=True)
    return overview[["study", *(column for column in overview.columns if column != "study")]]


def _write_text(text: str, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def claims_page(config: dict, job: dict, inputs, outputs) -> None:
    """Step: the report's page of one study's claims table (``inputs.claims``)."""
    import pandas as pd

    table = pd.read_csv(inputs.claims, keep_default_na=False, na_values=[""])
    sources = ", ".join(dict.fromkeys(str(source) for source in table["source"]))
    _write_text(claims_html(table, f"Claims of {sources or 'no source'}"), outputs.page)


def claims_overview(config: dict, job: dict, inputs, outputs) -> None:
    """Step: every enabled study's claims (``inputs``: one claims table per study, named by its
    config section) in one table and one page."""
    import pandas as pd

    from robustflow.io import write_csv

    overview = overview_table({section: pd.read_csv(path, keep_default_na=False, na_values=[""])
                               for section, path in inputs.items()})
    write_csv(overview, outputs.table)
    _write_text(claims_html(overview, "Every claim of every source document"), outputs.page)
