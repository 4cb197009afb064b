"""Pure PyTorch side of cxrq: data discovery, splits, preprocessing, models, training, metrics.

Nothing here knows about Celery, SQLAlchemy or click; callers pass paths and configs in and get
tensors, models and plain dicts back.
"""
