"""Committed reference results: the regression check and run comparison."""
