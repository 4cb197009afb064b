"""Persistence for cxrq: SQLAlchemy models, engine/session, migrations and report queries.

The database URL comes from CXRQ_DATABASE_URL (default: a SQLite file in the user data dir).
"""
