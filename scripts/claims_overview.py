"""Snakemake adapter: the report's claims overview step."""

from robustflow.claims_html import claims_overview
from robustflow.jobs import run_step

run_step(snakemake, claims_overview)
