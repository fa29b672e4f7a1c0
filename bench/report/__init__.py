"""Reports: the report of one run directory and the comparison of several."""
