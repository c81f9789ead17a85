"""Least privilege in PostgreSQL: what the application's own connection cannot do, what no one can
TRUNCATE, and secret files that are owner-only from their first byte."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import DatabaseUrls
from wa_archive.db import migrate
from wa_archive.devstack.embedded import APP_ROLE, OWNER_ROLE
from wa_archive.errors import MigrateAsAppRole
from wa_archive.integrity import ledger, merkle

REFUSED = (asyncpg.InsufficientPrivilegeError, asyncpg.RaiseError)

EVIDENCE = ("messages", "media", "ledger_leaves", "ledger_checkpoints", "ledger_head", "dispositions", "deliveries",
            "status_events", "archive_failures", "archive_attempts", "template_snapshots", "outbound_sends",
            "access_log", "legal_holds", "retention_policies", "erasure_requests", "webhook_events",
            "template_events", "storage_checks", "retrieval_reports", "message_deliveries", "api_tokens",
            "ledger_tiles")


async def _seed(admin_pool: asyncpg.Pool, *, retained: bool = True) -> str:
    """One message with a media row, a ledger leaf and an access-log row, written as the owner would."""
    mid = f"wamid.ROLES{os.urandom(4).hex()}"
    until = "now() + interval '1 year'" if retained else "now() - interval '1 day'"
    async with admin_pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO messages (id, source, direction, type, ts, archive_status, payload, text, retain_until)"
            f" VALUES ($1, 'meta', 'in', 'image', now(), 'archived', '{{}}'::jsonb, 'hello', {until})", mid)
        await conn.execute(
            "INSERT INTO media (message_id, position, media_id, kind, status, storage_key, sha256, retain_until)"
            f" VALUES ($1, 0, '1', 'image', 'archived', 'k', 'ab', {until})", mid)
        await conn.execute("INSERT INTO ledger_leaves (seq, kind, record_id, digest, leaf_hash)"
                           " SELECT size, 'message', $1, 'd', '\\x00' FROM ledger_head", mid)
        await conn.execute("UPDATE ledger_head SET size = size + 1")
        await conn.execute("INSERT INTO access_log (actor, role, action, target) VALUES ('a', 'auditor', 'view', '{}')")
    return mid


async def test_the_application_role_cannot_truncate_delete_rewrite_or_change_the_schema(clean_db, admin_pool):
    pool = clean_db
    mid = await _seed(admin_pool)
    assert await pool.fetchval("SELECT current_user") == APP_ROLE
    attempts = [f"TRUNCATE {table} CASCADE" for table in ("messages", "media", "ledger_leaves", "access_log",
                                                          "dispositions", "deliveries")]
    attempts += [
        f"DELETE FROM messages WHERE id = '{mid}'",
        f"DELETE FROM media WHERE message_id = '{mid}'",
        "DELETE FROM ledger_leaves",
        "DELETE FROM access_log",
        "DELETE FROM status_events", "DELETE FROM archive_failures", "DELETE FROM archive_attempts",
        "DELETE FROM dispositions", "DELETE FROM deliveries",
        "UPDATE ledger_leaves SET digest = 'x'",
        "UPDATE ledger_checkpoints SET body = 'x'",
        "UPDATE access_log SET actor = 'x'",
        f"UPDATE messages SET text = 'forged' WHERE id = '{mid}'",
        f"UPDATE messages SET payload = '{{}}' WHERE id = '{mid}'",
        "UPDATE ledger_head SET size = 0",
        f"UPDATE media SET sha256 = 'cd' WHERE message_id = '{mid}'",
        "ALTER TABLE ledger_leaves DISABLE TRIGGER ledger_leaves_append_only",
        "ALTER TABLE messages DISABLE TRIGGER ALL",
        "ALTER TABLE messages ADD COLUMN x text",
        "DROP TABLE access_log",
        "DROP TRIGGER access_log_append_only ON access_log",
        "CREATE TABLE mine (x int)",
        "CREATE OR REPLACE FUNCTION refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
        "SET session_replication_role = replica",
        "SELECT * FROM schema_migrations",
    ]
    for sql in attempts:
        with pytest.raises(REFUSED):
            await pool.execute(sql)
    # Nothing moved.
    assert await admin_pool.fetchval("SELECT text FROM messages WHERE id = $1", mid) == "hello"
    assert await admin_pool.fetchval("SELECT count(*) FROM ledger_leaves") == 1
    assert await admin_pool.fetchval("SELECT size FROM ledger_head") == 1
    assert await admin_pool.fetchval("SELECT sha256 FROM media WHERE message_id = $1", mid) == "ab"


async def test_the_application_role_owns_nothing_and_holds_no_power(clean_db, admin_pool):
    role = await admin_pool.fetchrow("SELECT * FROM pg_roles WHERE rolname = $1", APP_ROLE)
    assert not (role["rolsuper"] or role["rolcreaterole"] or role["rolcreatedb"] or role["rolbypassrls"])
    owned = await admin_pool.fetchval(
        "SELECT (SELECT count(*) FROM pg_class WHERE relowner = r.oid) + (SELECT count(*) FROM pg_proc"
        " WHERE proowner = r.oid) + (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid)"
        " FROM pg_roles r WHERE rolname = $1", APP_ROLE)
    assert owned == 0
    assert not await admin_pool.fetchval("SELECT pg_has_role($1, $2, 'MEMBER')", APP_ROLE, OWNER_ROLE)
    assert not await admin_pool.fetchval(
        "SELECT bool_or(has_table_privilege($1, c.oid, 'TRUNCATE') OR has_table_privilege($1, c.oid, 'TRIGGER')"
        " OR has_table_privilege($1, c.oid, 'REFERENCES')) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'", APP_ROLE)
    # The append-only tables: INSERT and SELECT, nothing else; the ledger's leaves and head only
    # through ledger_append(), so SELECT alone.
    for table, expected in (("ledger_checkpoints", {"SELECT", "INSERT"}), ("access_log", {"SELECT", "INSERT"}),
                            ("deliveries", {"SELECT", "INSERT"}), ("status_events", {"SELECT", "INSERT"}),
                            ("dispositions", {"SELECT"}), ("archive_failures", {"SELECT", "INSERT"}),
                            ("archive_attempts", {"SELECT", "INSERT"}), ("ledger_leaves", {"SELECT"}),
                            ("ledger_head", {"SELECT"}), ("ledger_candidates", {"SELECT"}),
                            ("ledger_tiles", {"SELECT"})):
        granted = {p for p in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
                   if await admin_pool.fetchval("SELECT has_table_privilege($1, $2, $3)", APP_ROLE, table, p)}
        assert granted == expected, table
        assert not await admin_pool.fetchval("SELECT has_any_column_privilege($1, $2, 'UPDATE')", APP_ROLE, table)
        assert not await admin_pool.fetchval("SELECT has_any_column_privilege($1, $2, 'INSERT')", APP_ROLE,
                                             table) or "INSERT" in expected or table == "ledger_candidates", table
    # A ledger candidate is inserted as (kind, record id, digest) and nothing else: not its place in the
    # order, not its time.
    insertable = {r["column_name"] for r in await admin_pool.fetch(
        "SELECT column_name FROM information_schema.column_privileges WHERE grantee = $1"
        " AND table_name = 'ledger_candidates' AND privilege_type = 'INSERT'", APP_ROLE)}
    assert insertable == {"kind", "record_id", "digest"}


async def test_the_application_role_appends_to_the_ledger_only_through_the_owners_function(clean_db, admin_pool):
    """A leaf at a number the head did not give out jams every later append; a head moved without
    its leaf leaves a gap. The application writes neither table: it adds a candidate (kind, record id,
    digest), and ledger_integrate() hashes and numbers candidates and moves the head at once."""
    pool = clean_db
    for sql in ("INSERT INTO ledger_leaves (seq, kind, record_id, digest, leaf_hash)"
                " VALUES ((SELECT size FROM ledger_head), 'message', 'wamid.squat', 'd', '\\x00')",
                "INSERT INTO ledger_leaves (seq, kind, record_id, digest, leaf_hash)"
                " VALUES (1000000, 'message', 'wamid.squat', 'd', '\\x00')",
                "UPDATE ledger_head SET size = size + 1",
                "INSERT INTO ledger_head VALUES (2, 0)"):
        with pytest.raises(REFUSED):
            await pool.execute(sql)
    async with pool.acquire() as conn, conn.transaction():
        first = await ledger.append(conn, "access", "1", "a" * 64)
        assert await ledger.append(conn, "message", "wamid.é", "b" * 64) > first  # candidate ids
    assert [r["seq"] for r in await pool.fetch("SELECT * FROM ledger_integrate(10)")] == [0, 1]
    with pytest.raises(asyncpg.RaiseError, match="not a kind"):
        await pool.execute("SELECT ledger_append('forged', 'x', 'd')")
    with pytest.raises(asyncpg.RaiseError, match="required"):
        await pool.execute("SELECT ledger_append('access', NULL, 'd')")
    assert await admin_pool.fetchval("SELECT size FROM ledger_head") == 2
    leaves = await admin_pool.fetch("SELECT * FROM ledger_leaves ORDER BY seq")
    assert [(r["seq"], r["kind"], r["record_id"]) for r in leaves] == [(0, "access", "1"), (1, "message", "wamid.é")]
    for r in leaves:
        assert bytes(r["leaf_hash"]) == merkle.leaf_hash(ledger.leaf_bytes(r["kind"], r["record_id"], r["digest"]))
    function = await admin_pool.fetchrow(
        "SELECT pg_get_userbyid(proowner) AS owner, prosecdef, proconfig FROM pg_proc"
        " WHERE oid = 'ledger_append(text, text, text)'::regprocedure")
    assert function["owner"] == OWNER_ROLE and function["prosecdef"]
    assert any(c.startswith("search_path=") for c in function["proconfig"])
    assert not await admin_pool.fetchval("SELECT has_function_privilege('public', 'ledger_append(text, text, text)',"
                                         " 'EXECUTE')")


LEAF_INPUTS = [
    ("message", "wamid.HBgLNDQ3NzAwOTAwMTIzFQIAEhgUM0E", "0" * 64),
    ("access", "42", "f" * 64),
    ("message", "wamid.Zoë-Ünïcødé-日本語-😀", "ab" * 32),
    ("status_event", 'quote " backslash \\ slash / tab \t newline \n cr \r', "cd" * 32),
    ("failure", "ctrl \x01\x08\x0c\x1f del \x7f", "ef" * 32),
    ("template_snapshot", "line sep \u2028 para sep \u2029 bom \ufeff nbsp \u00a0", ""),
    ("disposition", "", "é"),
]


@pytest.mark.parametrize("kind, record_id, digest", LEAF_INPUTS)
async def test_the_databases_leaf_hash_is_byte_identical_to_the_archives(clean_db, kind, record_id, digest):
    """Existing ledgers must still verify: the SQL leaf hash equals merkle.leaf_hash(leaf_bytes(...))."""
    computed = await clean_db.fetchval("SELECT ledger_leaf_hash($1, $2, $3)", kind, record_id, digest)
    assert bytes(computed) == merkle.leaf_hash(ledger.leaf_bytes(kind, record_id, digest))


async def test_truncate_of_evidence_is_refused_to_the_owner_too(clean_db, owner_pool):
    assert await owner_pool.fetchval("SELECT current_user") == OWNER_ROLE
    guarded = {r["table"] for r in await owner_pool.fetch(
        "SELECT c.relname AS table FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " JOIN pg_proc p ON p.oid = t.tgfoid WHERE p.proname IN ('refuse_truncate', 'access_log_append_only')"
        " AND (t.tgtype & 32) <> 0")}  # TRIGGER_TYPE_TRUNCATE
    assert set(EVIDENCE) <= guarded, set(EVIDENCE) - guarded
    for table in EVIDENCE:
        with pytest.raises(asyncpg.RaiseError, match="TRUNCATE refused"):
            await owner_pool.execute(f"TRUNCATE {table} CASCADE")


async def test_disposal_goes_through_the_owners_function_which_rechecks_the_rule(clean_db, admin_pool):
    pool = clean_db
    retained = await _seed(admin_pool)
    with pytest.raises(asyncpg.RaiseError, match="retained until"):
        await pool.execute("SELECT dispose_message_rows($1)", retained)
    due = await _seed(admin_pool, retained=False)
    with pytest.raises(asyncpg.RaiseError, match="no disposition record"):
        await pool.execute("SELECT dispose_message_rows($1)", due)
    await admin_pool.execute("UPDATE messages SET hold_cases = '{case-1}' WHERE id = $1", due)
    with pytest.raises(asyncpg.RaiseError, match="legal hold"):
        await pool.execute("SELECT dispose_message_rows($1)", due)
    # A hold's copy on the message cleared by the application: the hold itself still stops disposal.
    await admin_pool.execute("UPDATE messages SET contact_phone = '447700900123' WHERE id = $1", due)
    await admin_pool.execute("INSERT INTO legal_holds (case_id, phone, reason, set_by)"
                             " VALUES ('case-1', '447700900123', 'inquiry', 'test')")
    await admin_pool.execute("INSERT INTO dispositions (message_id, reason, retain_until, record)"
                             " VALUES ($1, 'retention_expired', now(), '{}')", due)
    await pool.execute("UPDATE messages SET hold_cases = '{}' WHERE id = $1", due)
    with pytest.raises(asyncpg.RaiseError, match="active legal hold"):
        await pool.execute("SELECT dispose_message_rows($1)", due)
    assert await admin_pool.fetchval("SELECT count(*) FROM messages") == 2
    # Released, the message goes, with its rows.
    await pool.execute("UPDATE legal_holds SET released_at = now(), released_by = 'test'")
    assert await pool.fetchval("SELECT dispose_message_rows($1)", due) is True
    assert await admin_pool.fetchval("SELECT count(*) FROM media WHERE message_id = $1", due) == 0
    assert await admin_pool.fetchval("SELECT count(*) FROM messages") == 1
    # The function is the application's only way; no one else was granted it.
    assert not await admin_pool.fetchval("SELECT has_function_privilege('public', 'dispose_message_rows(text)',"
                                         " 'EXECUTE')")


async def test_a_disposition_record_is_written_only_for_a_message_that_is_due(clean_db, admin_pool):
    """A dispositions row the application wrote for a retained message would hold its place in the
    unique index (its disposal could never be recorded) and make a removal look lawful."""
    pool = clean_db
    retained = await _seed(admin_pool)
    with pytest.raises(REFUSED):
        await pool.execute("INSERT INTO dispositions (message_id, reason, retain_until, record)"
                           " VALUES ($1, 'retention_expired', now() - interval '1 day', '{}')", retained)
    with pytest.raises(asyncpg.RaiseError, match="retained until"):
        await pool.execute("SELECT * FROM record_disposition($1, 'retention_expired', NULL, '{}', NULL)", retained)
    with pytest.raises(asyncpg.RaiseError, match="not archived"):
        await pool.execute("SELECT * FROM record_disposition('wamid.none', 'retention_expired', NULL, '{}', NULL)")
    due = await _seed(admin_pool, retained=False)
    await admin_pool.execute("INSERT INTO legal_holds (case_id, phone, reason, set_by)"
                             " VALUES ('case-2', '447700900124', 'inquiry', 'test')")
    await admin_pool.execute("UPDATE messages SET contact_phone = '447700900124' WHERE id = $1", due)
    with pytest.raises(asyncpg.RaiseError, match="legal hold"):
        await pool.execute("SELECT * FROM record_disposition($1, 'retention_expired', NULL, '{}', NULL)", due)
    await admin_pool.execute("UPDATE legal_holds SET released_at = now(), released_by = 'test'")
    # The retention recorded is the message's own, whatever the caller would claim.
    row = await pool.fetchrow("SELECT * FROM record_disposition($1, 'retention_expired', NULL, '{}', 'run')", due)
    assert row["message_id"] == due and row["retain_until"] == await admin_pool.fetchval(
        "SELECT retain_until FROM messages WHERE id = $1", due)
    assert await admin_pool.fetchval("SELECT count(*) FROM dispositions") == 1
    assert not await admin_pool.fetchval(
        "SELECT has_function_privilege('public', 'record_disposition(text, text, bigint, jsonb, text)', 'EXECUTE')")


async def test_migrate_refuses_the_application_role_and_grants_new_tables(database_urls: DatabaseUrls, clean_db,
                                                                         owner_pool, admin_pool):
    with pytest.raises(MigrateAsAppRole, match="WA_ARCHIVE_MIGRATE_DATABASE_URL"):
        await migrate(database_urls.app, app_role=APP_ROLE)
    # A table a later migration adds gets the same treatment on the next run.
    await owner_pool.execute("CREATE TABLE later_evidence (id bigserial PRIMARY KEY, note text)")
    try:
        assert await migrate(database_urls.owner, app_role=APP_ROLE) == []
        await clean_db.execute("INSERT INTO later_evidence (note) VALUES ('x')")
        assert await clean_db.fetchval("SELECT note FROM later_evidence") == "x"
        for sql in ("DELETE FROM later_evidence", "UPDATE later_evidence SET note = 'y'", "TRUNCATE later_evidence"):
            with pytest.raises(REFUSED):
                await clean_db.execute(sql)
        with pytest.raises(asyncpg.RaiseError, match="TRUNCATE refused"):
            await owner_pool.execute("TRUNCATE later_evidence")
    finally:
        await owner_pool.execute("DROP TABLE later_evidence")


async def test_the_cli_migrates_with_the_owner_url_and_says_when_it_falls_back(database_urls: DatabaseUrls):
    import asyncio
    import subprocess
    import sys

    async def run(**env: str) -> subprocess.CompletedProcess:
        base = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
        return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "wa_archive.cli", "migrate"],
                                       env={**base, **env}, capture_output=True, text=True, timeout=120)

    apart = await run(WA_ARCHIVE_MIGRATE_DATABASE_URL=database_urls.owner, WA_ARCHIVE_DATABASE_URL=database_urls.app)
    assert apart.returncode == 0 and "up to date" in apart.stdout and "no_owner_url" not in apart.stderr
    as_app = await run(WA_ARCHIVE_DATABASE_URL=database_urls.app)
    assert as_app.returncode == 1 and "WA_ARCHIVE_MIGRATE_DATABASE_URL" in as_app.stderr
    assert "migrate.no_owner_url" in as_app.stderr
    fallback = await run(WA_ARCHIVE_DATABASE_URL=database_urls.owner)
    assert fallback.returncode == 0 and "migrate.no_owner_url" in fallback.stderr


@pytest.fixture
def open_umask_no_chmod(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A umask that would leave files world-readable, and a record of every chmod: a secret file
    must be 0600 from its creation, never fixed afterwards."""
    chmods: list[str] = []
    real_os_chmod, real_path_chmod = os.chmod, Path.chmod
    monkeypatch.setattr(os, "chmod", lambda p, *a, **k: (chmods.append(str(p)), real_os_chmod(p, *a, **k))[1])
    monkeypatch.setattr(Path, "chmod", lambda p, *a, **k: (chmods.append(str(p)), real_path_chmod(p, *a, **k))[1])
    old = os.umask(0)
    try:
        yield chmods
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_dev_secret_files_are_owner_only_from_the_first_byte(tmp_path: Path, open_umask_no_chmod):
    from wa_archive.credentials import create_secret_file, ensure_dev_contact_secret, ensure_dev_ledger_key
    from wa_archive.devstack import dev

    ensure_dev_contact_secret(tmp_path)
    ensure_dev_ledger_key(tmp_path)
    values = dev._dev_secrets(tmp_path)
    assert {"db_owner_password", "db_app_password"} <= set(values)
    for name in ("contact-key.secret", "ledger-key.secret", dev.SECRETS_FILE):
        assert _mode(tmp_path / name) == 0o600, name
    assert open_umask_no_chmod == []
    # An older secrets file gains the new secrets in a file that is owner-only too.
    (tmp_path / dev.SECRETS_FILE).unlink()
    old = tmp_path / dev.SECRETS_FILE
    os.close(os.open(old, os.O_WRONLY | os.O_CREAT, 0o644))
    old.write_text(json.dumps({"app_secret": "a"}))
    assert dev._dev_secrets(tmp_path)["app_secret"] == "a"
    assert _mode(old) == 0o600 and open_umask_no_chmod == []
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # Never written through a file someone else placed there first.
    with pytest.raises(FileExistsError):
        create_secret_file(tmp_path / "contact-key.secret", "x")


@pytest.mark.slow
async def test_dev_upgrades_a_one_role_data_dir_and_runs_as_the_application_role(tmp_path: Path):
    """A data dir whose schema the superuser created (before the roles were split): `dev` hands it to
    the owner, migrates as the owner and serves, archives and reads as the application role."""
    import asyncio

    from tests.test_dev import _cli, _env, _start_dev, _stop
    from wa_archive.db import migration_files
    from wa_archive.devstack.embedded import DATABASE, EmbeddedPostgres, ensure_database

    data_dir = tmp_path / "data"
    pg = EmbeddedPostgres(data_dir / "postgres")
    admin = await asyncio.to_thread(pg.start)
    try:
        conn = await asyncpg.connect(await ensure_database(admin))
        try:
            await conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                               " applied_at timestamptz NOT NULL DEFAULT now())")
            for version, name, sql in migration_files():
                if version < 8:
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
        finally:
            await conn.close()
    finally:
        await asyncio.to_thread(pg.stop)

    env = _env(data_dir)
    log = tmp_path / "dev.log"
    proc = await asyncio.to_thread(_start_dev, env, tmp_path, log)
    try:
        state_path = data_dir / "dev.json"
        state = json.loads(state_path.read_text())
        assert state["database_url"].startswith(f"postgresql://{APP_ROLE}:")
        assert _mode(state_path) == 0o600 and _mode(data_dir / "dev-secrets.json") == 0o600
        assert "009_roles.sql" in log.read_text()
        demo = await asyncio.to_thread(_cli, "demo", env=env, cwd=tmp_path)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        found = await asyncio.to_thread(_cli, "search", "--json", env=env, cwd=tmp_path)
        assert found.returncode == 0 and len(json.loads(found.stdout)) == 1, found.stderr
        conn = await asyncpg.connect(state["database_url"])
        try:
            assert await conn.fetchval("SELECT current_user") == APP_ROLE
            with pytest.raises(REFUSED):
                await conn.execute("TRUNCATE messages")
            owners = {r["o"] for r in await conn.fetch(
                "SELECT pg_get_userbyid(c.relowner) AS o FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'S')"
                " UNION SELECT pg_get_userbyid(p.proowner) FROM pg_proc p JOIN pg_namespace n"
                " ON n.oid = p.pronamespace WHERE n.nspname = 'public'"
                " UNION SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", DATABASE)}
            assert owners == {OWNER_ROLE}
        finally:
            await conn.close()
    finally:
        assert await asyncio.to_thread(_stop, proc) == 0, log.read_text()[-3000:]


async def test_a_revoked_token_stays_revoked(clean_db):
    """The application role may set revoked_at (`tokens revoke` runs as it), and used to be able to set it
    back to NULL or move it: a leaked token revoked by an administrator could be brought back unseen."""
    from wa_archive.access.tokens import authenticate, create_token, revoke_token

    pool = clean_db
    token = await create_token(pool, "revoked-for-good", "auditor")
    await revoke_token(pool, "revoked-for-good")
    for sql in ("UPDATE api_tokens SET revoked_at = NULL WHERE name = 'revoked-for-good'",
                "UPDATE api_tokens SET revoked_at = now() + interval '1 year' WHERE name = 'revoked-for-good'"):
        with pytest.raises(asyncpg.RaiseError, match="revoked"):
            await pool.execute(sql)
    assert await authenticate(pool, token) is None
    await pool.execute("UPDATE api_tokens SET last_used_at = now() WHERE name = 'revoked-for-good'")  # still allowed
