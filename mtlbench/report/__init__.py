"""Reports: tidy tables, statistics, text, figures, HTML and the files written per study."""
