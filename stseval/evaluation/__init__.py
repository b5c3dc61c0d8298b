"""Scoring: Spearman of cosine against gold with bootstrap intervals, and encoding a task's splits for it."""
