# The report's own pages: each study's claims table as HTML (the report shows an .html item in
# its viewer, a CSV only as a download) and one overview of every enabled study's claims.
# The pages read no config: a page changes only when its claims tables do.
from robustflow.claims_html import (
    OVERVIEW_CATEGORY,
    STUDY_TITLES,
    claims_page_path,
)


def claims_table(section):
    """The claims CSV that the study's aggregate rule writes."""
    return getattr(rules, f"{section.removesuffix('_study')}_aggregate").output.claims


for section in STUDIES:

    rule:
        # Named after the study, like every other rule of it.
        name:
            f"{section.removesuffix('_study')}_claims_page"
        input:
            claims=claims_table(section),
        output:
            page=report(
                claims_page_path(section),
                caption=f"../report/{section.removesuffix('_study')}_claims.rst",
                category=STUDY_TITLES[section],
                labels={"table": "claims"},
            ),
        log:
            f"results/logs/{section}/claims_page.log",
        params:
            config={},
        script:
            "../scripts/claims_page.py"


rule claims_overview:
    input:
        **{section: claims_table(section) for section in ENABLED},
    output:
        table="results/tables/claims_overview.csv",
        page=report(
            "results/tables/claims_overview.html",
            caption="../report/claims_overview.rst",
            category=OVERVIEW_CATEGORY,
            labels={"table": "every claim"},
        ),
    log:
        "results/logs/claims_overview.log",
    params:
        config={},
    script:
        "../scripts/claims_overview.py"
