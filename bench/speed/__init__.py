"""Speed: the grid of cases, worker processes that time them, their records, tables and charts."""
