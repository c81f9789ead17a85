"""The application role's grants and the TRUNCATE guard on evidence, applied by `migrate`.

Re-applied after every migration run rather than frozen in one migration, so a table or column
added later gets the same treatment: the application role may read and append to everything,
update only the columns listed here, delete only where listed, and never truncate, alter or drop.
"""

from __future__ import annotations

import asyncpg
import structlog

log = structlog.get_logger()

# Columns the application updates in place (retention growing, holds, a failed item completed,
# tokens revoked and used, erasure requests settled). Everything else the application may only
# read and append to.
UPDATABLE: dict[str, tuple[str, ...]] = {
    "messages": ("retain_until", "retention_policy_id", "hold_cases", "archive_status"),
    "media": ("status", "storage_url", "storage_key", "size", "sha256", "mime_type", "declared_mime_type",
              "stored_at", "retain_until", "legal_hold"),
    "api_tokens": ("revoked_at", "last_used_at"),
    "legal_holds": ("released_at", "released_by"),
    "erasure_requests": ("status", "completed_at", "deferred_until", "legal_basis", "messages_removed",
                         "outcome"),
    # Capture health: the last webhook heard per number moves forward; a silence episode only ends.
    "capture_numbers": ("display_number", "last_webhook_at"),
    "capture_silences": ("ended_at",),
    # A one-time sign-in link is spent by setting when it was used.
    "ui_sign_in_links": ("used_at",),
}
# Rows the application deletes itself: a logged-out session is not evidence.
DELETABLE = frozenset({"ui_sessions"})
# Tables the application neither reads nor writes.
HIDDEN = frozenset({"schema_migrations"})
# The only tables that may be emptied wholesale; every other table holds evidence.
TRUNCATABLE = frozenset({"schema_migrations", "ui_sessions", "ui_sign_in_links"})
# The owner's functions that do for the application what it may not do itself, re-checking the
# rule instead of trusting the caller: record and carry out a disposal, add a ledger leaf candidate
# (hashed by the owner), and integrate candidates into the log in candidate order (the integrator).
EXECUTABLE = ("dispose_message_rows(text)", "record_disposition(text, text, bigint, jsonb, text)",
              "ledger_append(text, text, text)", "ledger_integrate(integer)",
              # the ledger's tiles (migration 024), computed by the owner's function from the leaves
              "ledger_write_tiles(integer)")
# Written only through those functions: a leaf at a number of the caller's choosing or a head moved
# without its leaf would jam or break the log, and a dispositions row for a retained message would
# block its disposal for good or make a removal look lawful.
NOT_INSERTABLE = frozenset({"ledger_head", "ledger_leaves", "ledger_candidates", "dispositions", "ledger_tiles",
                            "ledger_candidates_refused"})  # moved aside by migration 025 only
# Inserted by the application in these columns only: a ledger candidate is (kind, record id, digest);
# its place in the order (an identity) and its time are the database's, its leaf hash the integrator's.
INSERTABLE_COLUMNS = {"ledger_candidates": ("kind", "record_id", "digest")}


# The functions of the schema on which `$1` holds a privilege of its own (not only PUBLIC's).
_FUNCTIONS_GRANTED = """
SELECT DISTINCT p.oid::regprocedure::text AS function
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace, aclexplode(p.proacl) AS a
 WHERE n.nspname = 'public' AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = $1)
"""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def apply_roles(conn: asyncpg.Connection, app_role: str) -> None:
    """Guard every evidence table against TRUNCATE and every jsonb column against runaway nesting,
    and give `app_role` exactly its grants."""
    tables = [r["relname"] for r in await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname")]
    for table in tables:
        if table not in TRUNCATABLE:
            await conn.execute(
                f"CREATE OR REPLACE TRIGGER {_ident(table + '_no_truncate')} BEFORE TRUNCATE ON {_ident(table)}"
                " FOR EACH STATEMENT EXECUTE FUNCTION refuse_truncate()")
    if await conn.fetchval("SELECT to_regprocedure('guard_jsonb_columns()') IS NOT NULL"):
        await conn.execute("SELECT guard_jsonb_columns()")  # jsonb columns added since get the depth check
    role = await conn.fetchrow("SELECT rolname, rolsuper FROM pg_roles WHERE rolname = $1", app_role)
    if role is None:
        log.warning("database.app_role_missing", role=app_role,
                    detail="no grants applied; create the role and run migrate again")
        return
    if app_role == await conn.fetchval("SELECT current_user"):
        log.warning("database.app_role_is_owner", role=app_role,
                    detail="the application connects as the schema owner: no least privilege")
        return
    if role["rolsuper"]:
        log.warning("database.app_role_is_superuser", role=app_role, detail="grants cannot restrict a superuser")
    app = _ident(app_role)
    await conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {app}")
    await conn.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {app}")
    # Only the functions the role holds a grant on: a REVOKE rewrites a function's catalogue row even when
    # it changes nothing, and the token memory takes a rewritten row of the function announcing token
    # changes for tampering (access/token_cache.py), so every migrate would set it off.
    for granted in await conn.fetch(_FUNCTIONS_GRANTED, app_role):
        await conn.execute(f"REVOKE ALL ON ROUTINE {granted['function']} FROM {app}")
    await conn.execute(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC, {app}")
    await conn.execute(f"GRANT USAGE ON SCHEMA public TO {app}")
    for table in tables:
        if table in HIDDEN:
            continue
        privileges = ["SELECT"] if table in NOT_INSERTABLE else ["SELECT", "INSERT"]
        if table in DELETABLE:
            privileges.append("DELETE")
        await conn.execute(f"GRANT {', '.join(privileges)} ON {_ident(table)} TO {app}")
        existing = {r["attname"] for r in await conn.fetch(
            "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
            _ident(table))}
        columns = [c for c in UPDATABLE.get(table, ()) if c in existing]
        if columns:
            await conn.execute(f"GRANT UPDATE ({', '.join(map(_ident, columns))}) ON {_ident(table)} TO {app}")
        columns = [c for c in INSERTABLE_COLUMNS.get(table, ()) if c in existing]
        if columns:
            await conn.execute(f"GRANT INSERT ({', '.join(map(_ident, columns))}) ON {_ident(table)} TO {app}")
    await conn.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {app}")
    for function in EXECUTABLE:
        if await conn.fetchval("SELECT to_regprocedure($1)", function) is None:
            continue  # a schema migrated only part of the way (its later migration creates it)
        await conn.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
        await conn.execute(f"GRANT EXECUTE ON FUNCTION {function} TO {app}")
