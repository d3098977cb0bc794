"""The migrations build exactly the schema the models describe: a column, index or constraint
added to one and not the other fails here instead of in production."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from activities.tables import Base


def test_migrated_schema_matches_the_models(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
