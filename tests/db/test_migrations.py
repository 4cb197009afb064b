import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from db.migrate import current_revision, downgrade, head_revision, upgrade
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


def test_upgrading_from_0001_keys_old_predictions_by_their_model(any_db_url: str) -> None:
    engine = get_engine(any_db_url)  # at head
    downgrade(engine, "0001")
    with engine.begin() as conn:  # a prediction row as the first schema wrote it
        conn.execute(
            text(
                "INSERT INTO jobs (id, kind, state, params, progress_done, progress_total, "
                "message, cancel_requested, created_at) VALUES (1, 'score', 'succeeded', '{}', "
                "1, 1, '', false, CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO models (id, name, arch, preset, img_size, threshold, config, data, "
                "weights, weights_sha256, n_params, train_seconds, created_at) VALUES (7, 'm', "
                "'cnn', 'seed', 64, 0.5, '{}', '{}', 'w', 'x', 1, 1.0, CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO predictions (job_id, model_id, path, prob) "
                "VALUES (1, 7, '/a.jpeg', 0.3)"
            )
        )
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT scorer FROM predictions")).scalar_one() == "model:7"


def test_head_names_the_newest_migration_script() -> None:
    from db.migrate import script_head

    assert head_revision() == script_head()
