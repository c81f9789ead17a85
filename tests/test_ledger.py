"""The tamper-evident ledger, attacked the way a person with database or disk access could."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid

import pytest

from tests.conftest import LEDGER_KEY
from wa_archive.integrity import ledger, sequencing
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import dumps, envelope, media_message, message, wamid


def _env(stack, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
    env.update(WA_ARCHIVE_DATABASE_URL=database_url, WA_ARCHIVE_STORAGE_URL=stack.store.url,
               WA_ARCHIVE_LEDGER_SIGNING_KEY=LEDGER_KEY)
    return env


async def _cli(env, *args: str) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "wa_archive.cli", *args], env=env,
                                   capture_output=True, text=True, timeout=120)


async def _archive(stack, n_text: int = 2) -> dict:
    media = stack.graph.add(FakeMedia(f"l{uuid.uuid4().hex[:10]}", content=os.urandom(2000)))
    ids = {"image": wamid(), **{f"text{i}": wamid() for i in range(n_text)}}
    await stack.post(dumps(envelope(
        [media_message("image", media.media_id, media.sha256_b64(), "image/jpeg", mid=ids["image"])]
        + [message("text", {"body": f"statement {i}"}, mid=ids[f"text{i}"]) for i in range(n_text)])))
    for mid in ids.values():
        await stack.wait_for_message(mid)
    await stack.post(dumps(envelope(statuses=[{"id": "wamid.out1", "status": "sent", "timestamp": "1792493902"}])))
    return ids


@pytest.mark.slow
async def test_untouched_archive_verifies_and_each_tampering_is_named(stack, database_url, tmp_path):
    ids = await _archive(stack)
    env = _env(stack, database_url)
    first = await _cli(env, "ledger", "checkpoint")
    assert first.returncode == 0 and "checkpoint at tree size" in first.stdout
    more = await _archive(stack, 1)  # the log grows; a second checkpoint must extend the first
    assert (await _cli(env, "ledger", "checkpoint")).returncode == 0
    clean = await _cli(env, "verify", "--full")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "OK" in clean.stdout and "MB/s" in clean.stderr

    receipt = await _cli(env, "receipt", ids["text0"])
    assert receipt.returncode == 0, receipt.stderr
    path = tmp_path / "receipt.json"
    path.write_text(receipt.stdout)
    public_key = (await _cli(env, "ledger", "public-key")).stdout.strip()
    offline = {k: v for k, v in env.items() if k != "WA_ARCHIVE_DATABASE_URL"}  # no database needed
    ok = await _cli(offline, "verify-receipt", str(path), "--public-key", public_key)
    assert ok.returncode == 0 and "OK" in ok.stdout
    wrong_key = await _cli(offline, "verify-receipt", str(path), "--public-key", "A" * 43 + "=")
    assert wrong_key.returncode == 1 and "different key" in wrong_key.stdout

    # 1. A message's text changed with plain SQL.
    await stack.owner_pool.execute("UPDATE messages SET text = 'statement 9' WHERE id = $1", ids["text0"])
    # 2. A media row deleted (by someone who switched off the retention guard first).
    await _behind_the_guards(stack.admin_pool, "DELETE FROM media WHERE message_id = $1", ids["image"])
    # 3. A stored file overwritten behind the store's back (another message's image is kept intact).
    msg = await stack.wait_for_message(more["image"])
    stored = stack.store.root / msg["media"][0]["storage_key"]
    stored.chmod(0o644)
    stored.write_bytes(b"replaced")
    # 4. A checkpoint edited by someone who switched the guard off first.
    await stack.owner_pool.execute("ALTER TABLE ledger_checkpoints DISABLE TRIGGER ledger_checkpoints_append_only")
    size = await stack.pool.fetchval("SELECT min(tree_size) FROM ledger_checkpoints")
    await stack.owner_pool.execute("UPDATE ledger_checkpoints SET body = replace(body, '\"tree_size\"', '\"tree_size\" ')"
                             " WHERE tree_size = $1", size)
    await stack.owner_pool.execute("ALTER TABLE ledger_checkpoints ENABLE TRIGGER ledger_checkpoints_append_only")
    # 5. A whole message deleted, past the retention guard.
    await _behind_the_guards(stack.admin_pool, "DELETE FROM media WHERE message_id = $1", ids["text1"])
    await _behind_the_guards(stack.admin_pool, "DELETE FROM messages WHERE id = $1", ids["text1"])

    report = await _cli(env, "verify", "--full")
    assert report.returncode == 1
    out = report.stdout
    assert f"message {ids['text0']}: changed since it was archived" in out
    assert f"message {ids['image']}: changed since it was archived" in out
    assert f"message {more['image']}: object" in out and "was replaced" in out
    assert f"checkpoint {size}: signature not valid" in out
    assert f"message {ids['text1']}: deleted" in out
    assert f"checkpoint {size}: differs from its write-once copy in the store" in out
    assert "6 problem(s)" in out

    # The receipt of the altered message no longer proves anything.
    altered = await _cli(env, "receipt", ids["text0"])
    path.write_text(altered.stdout)
    bad = await _cli(offline, "verify-receipt", str(path), "--public-key", public_key)
    assert bad.returncode == 1 and "is not leaf" in bad.stdout


async def test_two_workers_archiving_at_once_leave_one_gapless_chain(stack_factory, database_url, temporal_address):
    from temporalio.client import Client

    from tests.conftest import DATA_CONVERTER
    from worker import build_worker, link_fetcher

    stack = await stack_factory()
    other = await Client.connect(temporal_address, data_converter=DATA_CONVERTER)  # a second worker identity
    second = build_worker(other, stack.settings, stack.pool, stack.store, stack.http, link_fetcher(stack.settings))
    async with second:
        ids = [wamid() for _ in range(40)]
        await asyncio.gather(*(stack.post(dumps(envelope([message("text", {"body": f"m{i}"}, mid=mid)])))
                               for i, mid in enumerate(ids)))
        for mid in ids:
            await stack.wait_for_message(mid)
    await sequencing.integrate(stack.pool)  # what the integrator's Schedule does within a second
    seqs = [r["seq"] for r in await stack.pool.fetch("SELECT seq FROM ledger_leaves ORDER BY seq")]
    assert seqs == list(range(len(seqs))) and len(seqs) >= 40
    assert await stack.pool.fetchval("SELECT size FROM ledger_head") == len(seqs)
    env = _env(stack, database_url)
    assert (await _cli(env, "ledger", "checkpoint")).returncode == 0
    assert (await _cli(env, "verify")).returncode == 0


async def test_ledger_rows_cannot_be_changed_through_the_database(stack):
    import asyncpg
    import pytest

    await _archive(stack, 1)
    assert await sequencing.integrate(stack.pool) >= 1
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await stack.owner_pool.execute("UPDATE ledger_leaves SET digest = 'x' WHERE seq = 0")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await stack.owner_pool.execute("DELETE FROM ledger_leaves WHERE seq = 0")
    doc = json.loads((await _cli({**os.environ, "WA_ARCHIVE_LEDGER_SIGNING_KEY": LEDGER_KEY},
                                 "ledger", "public-key")).stdout.strip().join(['"', '"']))
    assert len(doc) == 44


async def _behind_the_guards(pool, sql: str, *args) -> None:
    """A database superuser's tampering: triggers (the retention guard) switched off for one statement."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(sql, *args)


async def test_a_removal_is_accepted_only_from_a_disposition_record_with_its_own_leaf(stack, database_url):
    """An insider deletes a retained message and covers it with a dispositions row carrying its
    digest: without the row's own ledger leaf (disposal always appends one), `verify` names it; with
    a leaf that does not match the row, the row is named too and the removal is not accepted."""
    ids = {"bare": wamid(), "mismatched": wamid(), "kept": wamid()}
    await stack.post(dumps(envelope([message("text", {"body": f"statement {k}"}, mid=mid) for k, mid in ids.items()])))
    for mid in ids.values():
        await stack.wait_for_message(mid)
    env = _env(stack, database_url)
    assert (await _cli(env, "ledger", "checkpoint")).returncode == 0
    assert (await _cli(env, "verify")).returncode == 0

    covers = {}
    for name in ("bare", "mismatched"):
        victim = ids[name]
        digest = await stack.pool.fetchval("SELECT digest FROM ledger_leaves WHERE kind = 'message'"
                                           " AND record_id = $1 ORDER BY seq DESC LIMIT 1", victim)
        await _behind_the_guards(stack.admin_pool, "DELETE FROM message_deliveries WHERE message_id = $1", victim)
        await _behind_the_guards(stack.admin_pool, "DELETE FROM messages WHERE id = $1", victim)
        covers[name] = await stack.admin_pool.fetchval(
            "INSERT INTO dispositions (message_id, reason, retain_until, record)"
            " VALUES ($1, 'retention_expired', now() - interval '1 day', $2) RETURNING id",
            victim, {"message_digest": digest, "media": [], "status_events": [], "failures": []})
    async with stack.pool.acquire() as conn, conn.transaction():
        await ledger.append(conn, "disposition", str(covers["mismatched"]), "0" * 64)

    report = await _cli(env, "verify")
    assert report.returncode == 1
    out = report.stdout
    assert f"disposition {covers['bare']} of message {ids['bare']}: not in the ledger" in out
    assert f"message {ids['bare']}: deleted" in out
    assert f"disposition {covers['mismatched']}: changed since it was recorded" in out
    assert f"message {ids['mismatched']}: disposed, but the disposition record does not match" in out
    assert ids["kept"] not in out
