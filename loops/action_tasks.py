"""Celery tasks of the stop/delete actions (issue 5)."""
