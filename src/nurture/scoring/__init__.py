"""Lead scoring: fit (who they are) and engagement (what they do), and the hot definition."""
