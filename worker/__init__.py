"""Job execution: plain functions that load rows by id, call `training`, and write rows.

The same functions run in the CLI process (embedded mode) or inside Celery tasks (queued mode).
"""
