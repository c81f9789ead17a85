#!/bin/sh
# One-shot (mc): creates the archive's bucket with Object Lock (it can only be turned on at creation)
# and the archive's own access key, limited by archive-policy.json to that bucket. The administrator's
# key stays in this container and the store's; the archive never holds it. It cannot bypass governance
# retention nor change the bucket's policy. Safe to re-run.
set -eu
: "${OBJECTSTORE_ROOT_USER:?}" "${OBJECTSTORE_ROOT_PASSWORD:?}" "${S3_ACCESS_KEY:?}" "${S3_SECRET_KEY:?}"
mc alias set store http://objectstore:9000 "$OBJECTSTORE_ROOT_USER" "$OBJECTSTORE_ROOT_PASSWORD" >/dev/null
mc ls store/wa-archive >/dev/null 2>&1 || mc mb --with-lock store/wa-archive
mc admin policy create store wa-archive-app /deploy/archive-policy.json
mc admin user add store "$S3_ACCESS_KEY" "$S3_SECRET_KEY"
mc admin policy attach store wa-archive-app --user "$S3_ACCESS_KEY" 2>/dev/null \
  || mc admin policy entities store --user "$S3_ACCESS_KEY" | grep -q wa-archive-app
