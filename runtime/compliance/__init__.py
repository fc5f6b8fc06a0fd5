"""Compliance exports (`autopilot compliance export`): the documents an auditor or a data
subject asks for, filled from the store and the run, never typed by hand. Missing evidence
is an explicit gap in the document, so a reader sees what is absent instead of nothing."""
