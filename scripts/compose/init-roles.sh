#!/bin/sh
# docker-compose only: run once by the postgres image on an empty volume (docker-entrypoint-initdb.d).
# The two roles of the app database: bankflow_owner owns it and runs migrations; bankflow_app is
# what API and worker log in as (its table privileges come from `bankflow db upgrade`). Neither is
# a superuser. On a volume made before these roles existed, run this script once by hand:
#   docker compose exec postgres sh /docker-entrypoint-initdb.d/10-bankflow-roles.sh
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v owner_password="$BANKFLOW_OWNER_DB_PASSWORD" -v app_password="$BANKFLOW_APP_DB_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE bankflow_owner LOGIN PASSWORD %L', :'owner_password')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bankflow_owner') \gexec
SELECT format('CREATE ROLE bankflow_app LOGIN PASSWORD %L', :'app_password')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bankflow_app') \gexec
SELECT 'CREATE DATABASE bankflow OWNER bankflow_owner'
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'bankflow') \gexec
ALTER DATABASE bankflow OWNER TO bankflow_owner;
GRANT CONNECT, TEMPORARY ON DATABASE bankflow TO bankflow_app;
SQL
