"""Snakemake adapter: the report's claims page step."""

from robustflow.claims_html import claims_page
from robustflow.jobs import run_step

run_step(snakemake, claims_page)
