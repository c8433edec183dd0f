"""Celery tasks: thin adapters over loops.services. They take ARNs and ids, never model instances."""
