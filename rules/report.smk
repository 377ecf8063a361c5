# The report's own pages: each study's claims table as HTML (the report shows an .html item in
# its viewer, a CSV only as a download) and one overview of every enabled study's claims.
# The pages read no config: a page changes only when its claims tables do.
from robustflow.claims_html import (
    OVERVIEW_CATEGORY,
    STUDY_TITLES,
    claims_page_path,
)

# Each study's tables' prefix (its rules' too), and the claims CSV its aggregate rule writes.
PREFIXES = {section: section.removesuffix("_study") for section in STUDIES}
CLAIMS_TABLES = {
    section: getattr(rules, f"{PREFIXES[section]}_aggregate").output.claims
    for section in STUDIES
}


for section in STUDIES:

    rule:
        # Named after the study, like every other rule of it.
        name:
            f"{PREFIXES[section]}_claims_page"
        input:
            claims=CLAIMS_TABLES[section],
        output:
            page=report(
                claims_page_path(section),
                caption=f"../report/{PREFIXES[section]}_claims.rst",
                category=STUDY_TITLES[section],
                labels={"table": "claims"},
            ),
        log:
            f"results/logs/{section}/claims_page.log",
        conda:
            "../envs/robustflow.yaml"
        params:
            config={},
        script:
            "../scripts/claims_page.py"


rule claims_overview:
    input:
        **{section: CLAIMS_TABLES[section] for section in ENABLED},
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
    conda:
        "../envs/robustflow.yaml"
    params:
        config={},
    script:
        "../scripts/claims_overview.py"
