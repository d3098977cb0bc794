"""Alembic environment: the URL comes from the caller (tests, `bankflow db upgrade`) or Settings."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

from activities.migrate import grant_runtime
from activities.tables import Base
from schemas.settings import Settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

if config.attributes.get("url"):
    url, runtime_role = config.attributes["url"], config.attributes.get("runtime_role")
else:  # the bare `alembic` command: the owner's URL and the runtime role from Settings
    settings = Settings()
    url, runtime_role = settings.migration_sqlalchemy_url, settings.runtime_role


def run() -> None:
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
            if runtime_role:  # in the same transaction: no moment with a table ungranted
                grant_runtime(connection, runtime_role)


run()
