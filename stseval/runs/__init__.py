"""The resumable runs behind the commands (whiten, simcse-train, index): plan cells, compute, write result rows."""
