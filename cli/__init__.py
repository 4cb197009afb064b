"""The `cxrq` command line. Heavy imports (torch, SQLAlchemy) happen inside commands only."""
