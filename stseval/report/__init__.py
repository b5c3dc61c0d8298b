"""Grids, markdown and plots made from result rows, with how they were produced."""
