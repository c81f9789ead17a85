"""Reconciliation reports in export bundles: every version of each day the exported period touches is
carried with its receipt and checked by `verify-export`; an edited report is caught."""

from __future__ import annotations

import json
import zipfile
from datetime import datetime, timedelta, timezone

from tests.test_proofs import PUBLIC_KEY, REAL, _cli, _env, _offline, _rebuild
from wa_archive.integrity import reconciliation
from wa_archive.sources.meta.samples import dumps, envelope, message, wamid

PHONE = "447700900123"


async def _save_report(stack, day) -> None:
    report = await reconciliation.compute(stack.pool, day, as_of=datetime.now(timezone.utc),
                                          deadlines=reconciliation.deadlines_of(stack.settings))
    await reconciliation.save(stack.pool, report, reconciliation.finish(report, None), workflow_id=None, run_id=None)


async def test_an_export_over_a_reconciled_day_carries_its_reports_and_a_tampered_one_fails(
        stack, database_url, tmp_path):
    now = datetime.now(timezone.utc)
    today, outside = now.date(), now.date() - timedelta(days=3)
    mid = wamid()
    status, _ = await stack.post(dumps(envelope([message("text", {"body": "reconciled"}, mid=mid,
                                                         ts=int(now.timestamp()))])))
    assert status == 200
    await stack.wait_for_message(mid)
    await _save_report(stack, today)
    await _save_report(stack, today)  # reconciled again: version 2 beside version 1
    await _save_report(stack, outside)  # a day the export does not cover
    stored = await stack.pool.fetch("SELECT * FROM reconciliation_reports WHERE report_date = $1 ORDER BY version",
                                    today)
    assert [r["version"] for r in stored] == [1, 2]

    env = _env(stack, database_url)
    bundle = tmp_path / "bundle.zip"
    since = until = today.isoformat()  # an until date includes its whole day
    run = await _cli(env, "export", "--phone", PHONE, "--since", since, "--until", until, "--out", str(bundle),
                     "--local")
    assert run.returncode == 0, run.stderr
    ok = await _cli(_offline(), "verify-export", str(bundle), "--public-key", PUBLIC_KEY)
    assert ok.returncode == 0 and "intact" in ok.stdout, ok.stdout + ok.stderr

    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read("manifest.json"))
        entries = manifest["reconciliation"]
        assert [(e["date"], e["version"]) for e in entries] == [(since, 1), (since, 2)]
        for entry, row in zip(entries, stored, strict=True):
            assert zf.read(entry["path"]) == row["body"].encode()  # the exact bytes the ledger leaf hashes
            assert entry["sha256"] == row["sha256"] and entry["id"] == str(row["id"])
            receipt = json.loads(zf.read(entry["receipt"]))
            assert receipt["record"] == {"kind": "reconciliation", "id": str(row["id"]), "digest": row["sha256"]}
        assert not any(outside.isoformat() in n for n in names)
        assert {f"reconciliation/{since}/v1.json", f"reconciliation/{since}/v2.json"} <= names
    # A receipt from the bundle checks out offline on its own, too.
    receipt_file = tmp_path / "report-receipt.json"
    with zipfile.ZipFile(bundle) as zf:
        receipt_file.write_bytes(zf.read(entries[0]["receipt"]))
    offline = await _cli(_offline(), "verify-receipt", str(receipt_file), "--public-key", PUBLIC_KEY)
    assert offline.returncode == 0 and "OK" in offline.stdout, offline.stdout + offline.stderr

    report_path = entries[0]["path"]
    with zipfile.ZipFile(bundle) as zf:
        original = zf.read(report_path)
    edited = original.replace(b'"status":"red"', b'"status":"green"') if b'"status":"red"' in original else \
        original.replace(b'"received":1', b'"received":2')
    assert edited != original
    # The report edited in place: its hash no longer matches the signed manifest.
    flipped = tmp_path / "flipped.zip"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(flipped, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, edited if item.filename == report_path else src.read(item.filename))
    bad = await _cli(_offline(), "verify-export", str(flipped), "--public-key", PUBLIC_KEY)
    assert bad.returncode == 1 and "not intact" in bad.stdout
    assert f"{report_path}: SHA-256" in bad.stdout and "does not match the manifest" in bad.stdout
    # Edited with the manifest rebuilt and signed by the ledger key itself: the receipt still catches it.
    resigned = tmp_path / "resigned.zip"
    _rebuild(bundle, resigned, {report_path: edited}, REAL)
    bad = await _cli(_offline(), "verify-export", str(resigned), "--public-key", PUBLIC_KEY)
    assert bad.returncode == 1 and "not intact" in bad.stdout
    assert f"{report_path}: its bytes do not match the digest its receipt proves" in bad.stdout, bad.stdout
    # Swapped for the other version (a genuine report of the same day): named, though each file is genuine.
    swapped = tmp_path / "swapped.zip"
    with zipfile.ZipFile(bundle) as zf:
        other = zf.read(entries[1]["path"])
    _rebuild(bundle, swapped, {report_path: other}, REAL)
    bad = await _cli(_offline(), "verify-export", str(swapped), "--public-key", PUBLIC_KEY)
    assert bad.returncode == 1 and f"{report_path}: is the report of {since} version 2" in bad.stdout, bad.stdout
