"""Verdicts that mean what they say: a bundle re-zipped with `zip -r` (folder entries and all) is still
intact while an added file is not; a mistyped path is a missing file, not a failed verification; a
mistyped command gets "did you mean", not the list of every command."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest

from tests.conftest import LEDGER_KEY
from wa_archive.integrity import ledger
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import dumps, envelope, media_message, message, wamid

PUBLIC_KEY = base64.b64encode(ledger.Signer(base64.b64decode(LEDGER_KEY)).public_key()).decode()
PHONE = "447700900461"


def _offline() -> dict[str, str]:
    """An auditor's machine: nothing of the archive's configuration."""
    return {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}


def _cli(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wa_archive.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def _zip_r(folder: Path, out: Path) -> None:
    """Zip `folder`'s content the way `zip -r` does: an entry for every folder, then its files."""
    if shutil.which("zip"):
        subprocess.run(["zip", "-r", "-q", str(out), "."], cwd=folder, check=True)
        return
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(folder).as_posix() + ("/" if path.is_dir() else ""))


@pytest.fixture
async def bundle(stack, database_url, tmp_path) -> Path:
    """A real export bundle of one contact's messages (one image, one text)."""
    media = stack.graph.add(FakeMedia(f"v{uuid.uuid4().hex[:10]}", mime_type="image/jpeg",
                                      content=b"\xff\xd8\xff" + os.urandom(800)))
    ids = [wamid(), wamid()]
    await stack.post(dumps(envelope([
        media_message("image", media.media_id, media.sha256_b64(), "image/jpeg", mid=ids[0], phone=PHONE),
        message("text", {"body": "re-zipped and still intact"}, mid=ids[1], phone=PHONE)], phone=PHONE)))
    for mid in ids:
        await stack.wait_for_message(mid)
    env = {**_offline(), "WA_ARCHIVE_DATABASE_URL": database_url, "WA_ARCHIVE_STORAGE_URL": stack.store.url,
           "WA_ARCHIVE_LEDGER_SIGNING_KEY": LEDGER_KEY}
    out = tmp_path / "bundle.zip"
    run = await asyncio.to_thread(_cli, env, "export", "--phone", PHONE, "--out", str(out), "--local")
    assert run.returncode == 0, run.stderr
    return out


@pytest.mark.slow
async def test_a_bundle_rezipped_with_folder_entries_is_intact_and_an_added_file_is_not(bundle, tmp_path):
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(unpacked)
    rezipped = tmp_path / "rezipped.zip"
    _zip_r(unpacked, rezipped)
    with zipfile.ZipFile(rezipped) as zf:
        folders = [i.filename for i in zf.infolist() if i.is_dir()]
    assert "media/" in folders and "ledger/receipts/" in folders  # what tripped the verifier before
    ok = _cli(_offline(), "verify-export", str(rezipped), "--public-key", PUBLIC_KEY)
    assert ok.returncode == 0 and "intact" in ok.stdout, ok.stdout + ok.stderr

    # An added file is still refused, inside a listed folder or in a new one.
    (unpacked / "media" / "note.txt").write_text("added after the export")
    (unpacked / "extra").mkdir()
    (unpacked / "extra" / "x.txt").write_text("x")
    added = tmp_path / "added.zip"
    _zip_r(unpacked, added)
    refused = _cli(_offline(), "verify-export", str(added), "--public-key", PUBLIC_KEY, "--json")
    assert refused.returncode == 1
    problems = refused.stdout
    assert "media/note.txt: not listed in the manifest" in problems and "extra/x.txt: not listed" in problems
    assert "extra/: not listed in the manifest" in problems  # a folder that holds no listed file

    # A folder entry is only ever a name: one with content, a traversal name or a duplicate is refused.
    with zipfile.ZipFile(rezipped) as zf:
        entries = [(i, zf.read(i)) for i in zf.infolist()]
    crafted = tmp_path / "crafted.zip"
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(crafted, "w") as out:
        for info, data in entries:
            out.writestr(info, data)
        out.writestr(zipfile.ZipInfo("ledger/"), b"")  # a second ledger/ entry
        out.writestr(zipfile.ZipInfo("media/"), b"smuggled bytes")  # and a media/ with content
        out.writestr(zipfile.ZipInfo("media/../"), b"")
        out.writestr(zipfile.ZipInfo("../outside/"), b"")
    refused = _cli(_offline(), "verify-export", str(crafted), "--public-key", PUBLIC_KEY)
    assert refused.returncode == 1, refused.stdout
    for said in ("ledger/: appears more than once", "media/: appears more than once",
                 "media/../: not listed in the manifest", "../outside/: not listed in the manifest"):
        assert said in refused.stdout, (said, refused.stdout)


def test_a_mistyped_bundle_or_receipt_path_is_a_missing_file_not_a_verdict(tmp_path):
    trusting = {**_offline(), "WA_ARCHIVE_LEDGER_PUBLIC_KEY": PUBLIC_KEY}
    for args in (("verify-export", "bundel.zip"), ("verify-export", "bundel.zip", "--json"),
                 ("verify-receipt", "reciept.json"), ("verify-receipt", "reciept.json", "--json")):
        run = _cli(trusting, *args, cwd=tmp_path)
        assert run.returncode == 2, (args, run.stdout, run.stderr)
        assert f"wa-archive: {args[1]} does not exist" in run.stderr, run.stderr
        assert "intact" not in run.stdout + run.stderr and "FAIL" not in run.stdout and run.stdout == ""
    # Without a key as well: the path is what to fix first.
    run = _cli(_offline(), "verify-export", "bundel.zip", cwd=tmp_path)
    assert run.returncode == 2 and "does not exist" in run.stderr
    # A folder is not a bundle, and a real file that is no ZIP is a failed verification (exit 1).
    folder = _cli(trusting, "verify-export", str(tmp_path))
    assert folder.returncode == 2 and "is a folder, not a bundle file" in folder.stderr
    not_zip = tmp_path / "bundle.zip"
    not_zip.write_text("not a zip")
    broken = _cli(trusting, "verify-export", str(not_zip))
    assert broken.returncode == 1 and "not a readable ZIP file" in broken.stdout


@pytest.mark.parametrize(("args", "suggestion"), [
    (["serch"], "did you mean search?"),
    (["verify-exprot", "b.zip"], "did you mean verify-export?"),
    (["tokens", "lst"], "did you mean list?"),
    (["consent", "shw", "447700900461"], "did you mean show?"),
])
def test_a_mistyped_command_gets_did_you_mean_without_the_command_list(args, suggestion):
    run = _cli(_offline(), *args)
    assert run.returncode == 2 and run.stdout == ""
    assert suggestion in run.stderr, run.stderr
    assert "retrieval-tests" not in run.stderr and "choose from" not in run.stderr  # no list of every command
    assert len(run.stderr.splitlines()) == 2  # the usage line and the error


def test_a_command_nothing_resembles_points_to_help():
    run = _cli(_offline(), "xyzzy")
    assert run.returncode == 2 and "unknown command 'xyzzy'; `wa-archive --help` lists them" in run.stderr
    assert "did you mean" not in run.stderr and "retrieval-tests" not in run.stderr
