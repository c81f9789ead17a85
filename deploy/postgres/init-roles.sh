#!/bin/sh
# Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d).
# Three users apart: Temporal's own, the archive's schema owner (runs `wa-archive migrate`), and the
# archive's application role (webhook and worker), which owns nothing and gets its grants from migrate.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v temporal_pw="$TEMPORAL_DB_PASSWORD" -v owner_pw="$ARCHIVE_OWNER_DB_PASSWORD" \
  -v app_pw="$ARCHIVE_APP_DB_PASSWORD" <<'SQL'
CREATE ROLE temporal LOGIN NOCREATEDB PASSWORD :'temporal_pw';
CREATE ROLE wa_archive_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'owner_pw';
CREATE ROLE wa_archive_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app_pw';
CREATE DATABASE wa_archive OWNER wa_archive_owner;
REVOKE ALL ON DATABASE wa_archive FROM PUBLIC;
GRANT CONNECT ON DATABASE wa_archive TO wa_archive_owner, wa_archive_app;
SQL
# Temporal's two databases, owned by its own role (temporal-schema fills them).
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<'SQL'
CREATE DATABASE temporal OWNER temporal;
CREATE DATABASE temporal_visibility OWNER temporal;
REVOKE ALL ON DATABASE temporal, temporal_visibility FROM PUBLIC;
GRANT CONNECT ON DATABASE temporal, temporal_visibility TO temporal;
SQL
