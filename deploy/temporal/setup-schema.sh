#!/bin/sh
# One-shot (temporalio/admin-tools): brings Temporal's two databases to the schema of the server image
# pinned beside it. The databases and their owner, the `temporal` role, are created by
# deploy/postgres/init-roles.sh; this role owns nothing of the archive's. Safe to re-run: setup-schema
# keeps an existing version table and update-schema applies only the versions not yet applied.
set -eu
: "${TEMPORAL_DB_PASSWORD:?}"
export SQL_PASSWORD="$TEMPORAL_DB_PASSWORD"
schema=/etc/temporal/schema/postgresql/v12
for db in temporal:temporal temporal_visibility:visibility; do
  name=${db%%:*}
  dir=${db#*:}
  temporal-sql-tool --plugin postgres12 --ep postgres -p 5432 -u temporal --db "$name" setup-schema -v 0.0
  temporal-sql-tool --plugin postgres12 --ep postgres -p 5432 -u temporal --db "$name" \
    update-schema -d "$schema/$dir/versioned"
done
