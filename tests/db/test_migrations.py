import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from db.migrate import current_revision, head_revision, upgrade
from db.schema import Base
from db.session import DatabaseError, get_engine


def test_migrations_build_exactly_the_models(any_db_url: str) -> None:
    engine = get_engine(any_db_url)  # sqlite upgrades itself; postgres was upgraded by the fixture
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_a_server_database_behind_the_schema_says_run_upgrade(postgres_url: str) -> None:
    with pytest.raises(DatabaseError, match=r"schema empty.*run `cxrq db upgrade`"):
        get_engine(postgres_url)
    upgrade(create_engine(postgres_url))
    assert current_revision(get_engine(postgres_url)) == head_revision()


def test_an_unreachable_database_is_one_line_with_the_masked_url() -> None:
    with pytest.raises(DatabaseError) as info:
        get_engine("postgresql+psycopg://cxrq:s3cret@127.0.0.1:1/cxrq")
    message = str(info.value)
    assert "s3cret" not in message and "127.0.0.1:1" in message and "\n" not in message
