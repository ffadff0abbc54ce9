"""From result rows to errors, metrics, tables, figures, timing and the HTML report."""
