"""Publication figures (seaborn), each written as PDF and PNG."""
