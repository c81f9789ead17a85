"""What `make run` prints works as printed: the banner's lines, pasted into a fresh shell elsewhere
(the venv not on PATH, no WA_ARCHIVE_* set), reach the running dev, create a token per role, the
auditor's token signs in at the printed pages and so does the sign-in link its printed command makes; a
shell that misses the data dir is told how to find it."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.test_dev import _env
from wa_archive.devstack.banner import ROLES, cli_command, shell_setup

VENV = Path(sys.executable).parent.parent


def _fresh_shell_env() -> dict[str, str]:
    """A new terminal's environment: no WA_ARCHIVE_* settings, no venv on PATH. PYTHONPATH stays: it
    points the venv's script at this checkout's code, as an installed package would be."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_") and k != "VIRTUAL_ENV"}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and Path(p).resolve() != (VENV / "bin").resolve())
    return env


def _shell(lines: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run lines as pasted into a fresh shell."""
    return subprocess.run(["bash", "--noprofile", "--norc", "-e", "-c", "\n".join(lines)], cwd=cwd,
                          env=_fresh_shell_env(), capture_output=True, text=True, timeout=120)


def _block(banner: str, heading: str) -> list[str]:
    """The lines under a banner heading, as a user copies them (indent removed), up to the blank line."""
    lines = banner.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading)) + 1
    block = []
    for line in lines[start:]:
        if not line.strip():
            break
        assert line.startswith("  "), line
        block.append(line[2:])
    return block


def _quick_start_blocks() -> list[list[str]]:
    """The README quick start's shell blocks, each as its command lines without their comments."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("## Quick start"):readme.index("\n## ", readme.index("## Quick start") + 1)]
    return [[line.split("  #")[0].rstrip() for line in block.splitlines() if line.strip()]
            for block in re.findall(r"```sh\n(.*?)```", section, re.S)]


def _start_like_make_run(checkout: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    """`make run`'s command, `.venv/bin/wa-archive dev` in the checkout; returns the process and its banner."""
    proc = subprocess.Popen([".venv/bin/wa-archive", "dev"], cwd=checkout, env=env, stdout=log.open("ab"),
                            stderr=(log.parent / "dev.err").open("ab"))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        text = log.read_text()
        if "A token for each role" in text and text.rstrip("\n").endswith(f"--name {ROLES[-1]}"):
            return proc, text
        time.sleep(0.3)
    proc.kill()
    raise AssertionError("dev printed no banner: " + log.read_text()[-3000:])


def _sign_in(pages_url: str, token: str) -> str:
    """Open the printed pages URL, follow it to the sign-in form, paste the token; the page reached."""
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with browser.open(pages_url, timeout=10) as resp:
        assert urllib.parse.urlsplit(resp.url).path == "/ui/login", resp.url
        form = resp.read().decode()
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form))
    body = urllib.parse.urlencode({**fields, "token": token}).encode()
    with browser.open(urllib.request.Request(urllib.parse.urljoin(pages_url, "/ui/login"), data=body),
                      timeout=10) as resp:
        assert resp.status == 200 and urllib.parse.urlsplit(resp.url).path == "/ui/", resp.url
        return resp.read().decode()


def _sign_in_with_link(url: str) -> str:
    """Open a printed sign-in link as a browser would (the fragment stays in the browser, its page's script
    puts the code in the form) and press "Sign in"; the page reached."""
    base, _, fragment = url.partition("#")
    code = fragment.removeprefix("code=")
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with browser.open(base, timeout=10) as resp:
        form = resp.read().decode()
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form))
    body = urllib.parse.urlencode({**fields, "code": code}).encode()
    with browser.open(urllib.request.Request(base, data=body), timeout=10) as resp:
        assert resp.status == 200 and resp.url == urllib.parse.urljoin(base, "/ui/"), resp.url
        return resp.read().decode()


@pytest.mark.slow
def test_the_banners_lines_work_as_printed_from_a_fresh_shell(tmp_path):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / ".venv").symlink_to(VENV)  # a checkout whose `make run` built .venv
    elsewhere = tmp_path / "elsewhere"  # where the second terminal opens
    elsewhere.mkdir()
    data_dir = tmp_path / "data"
    env = _env(data_dir)
    log = tmp_path / "dev.log"
    proc, banner = _start_like_make_run(checkout, env, log)
    try:
        assert _shell(["command -v wa-archive"], elsewhere).returncode != 0, "the venv must not be on PATH"
        state = json.loads((data_dir / "dev.json").read_text())
        try_it = _block(banner, "Try it from another terminal")
        assert try_it[:2] == [f"cd {checkout}", f"export WA_ARCHIVE_DATA_DIR={data_dir}"]
        tried = _shell(try_it, elsewhere)  # pasted whole, comment line included
        assert tried.returncode == 0, tried.stdout + tried.stderr
        message_id = re.search(r"wa-archive show '([^']+)'", tried.stdout).group(1)
        searched = json.loads(tried.stdout[tried.stdout.index("\n[") + 1:])
        assert [m["id"] for m in searched] == [message_id]

        tokens = _block(banner, "A token for each role")
        commands = {line.split("--role ")[1].split()[0]: line for line in tokens if " tokens create " in line}
        assert sorted(commands) == sorted(ROLES)
        # After the auditor's token, the line that makes its sign-in link (run below, once the token exists).
        link_command = tokens[tokens.index(commands["auditor"]) + 1]
        assert link_command == ".venv/bin/wa-archive tokens sign-in-link --name auditor", tokens
        issued = {}
        for role, command in commands.items():
            assert command.startswith(".venv/bin/wa-archive tokens create"), command
            done = _shell([*try_it[:2], command], elsewhere)
            assert done.returncode == 0, done.stdout + done.stderr
            issued[role] = done.stdout.strip()
        listed = _shell([*try_it[:2], ".venv/bin/wa-archive tokens list --json"], elsewhere)
        assert {(t["name"], t["role"]) for t in json.loads(listed.stdout)} == {(r, r) for r in ROLES}

        auditor_line = next(line for line in tokens if line.startswith("# auditor:"))
        pages_url = re.search(r"(http://\S+/ui/)", auditor_line).group(1)
        assert pages_url == state["http_url"] + "/ui/"
        page = _sign_in(pages_url, issued["auditor"])
        assert "auditor · auditor" in page
        linked = _shell([*try_it[:2], link_command], elsewhere)
        assert linked.returncode == 0, linked.stdout + linked.stderr
        link = linked.stdout.strip()
        assert link.startswith(state["http_url"] + "/ui/login/link#code="), link
        assert "auditor · auditor" in _sign_in_with_link(link)
        api = urllib.request.Request(state["http_url"] + "/api/v1/messages",
                                     headers={"Authorization": f"Bearer {issued['auditor']}"})
        with urllib.request.urlopen(api, timeout=10) as resp:
            assert [m["id"] for m in json.loads(resp.read())["items"]] == [message_id]

        # The README's quick start shows these same lines, and its auditor's proof runs as written there.
        readme = _quick_start_blocks()
        assert [c for c in readme[1] if not c.startswith("cd ")] == [c for c in try_it[2:] if not c.startswith("#")]
        assert readme[2] == [c for c in tokens if not c.startswith("#")]
        proof = [line.replace("'wamid.…'", shlex.quote(message_id)) for line in readme[3]]
        proved = _shell([*try_it[:2], *proof], elsewhere)
        assert proved.returncode == 0, proved.stdout + proved.stderr
        assert "bundle.zip: intact" in proved.stdout and f"OK: message {message_id} is leaf" in proved.stdout

        # A second terminal that does not set the data dir is told how to find the running dev.
        for command in (f"{checkout}/.venv/bin/wa-archive demo", f"{checkout}/.venv/bin/wa-archive search"):
            lost = _shell([command], elsewhere)
            assert lost.returncode != 0
            assert f"under {elsewhere}/.wa-archive" in lost.stderr, lost.stderr
            assert "set WA_ARCHIVE_DATA_DIR" in lost.stderr, lost.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, log.read_text()[-3000:]


def test_the_default_data_dir_needs_only_the_directory_and_another_venv_its_full_path(tmp_path):
    """With the default data dir the printed `cd` is enough (no export line); run from a directory without
    the venv, the banner names the script by its absolute path."""
    assert shell_setup((tmp_path / ".wa-archive").resolve(), tmp_path) == [f"cd {tmp_path}"]
    assert shell_setup(tmp_path / "data", tmp_path) == [f"cd {tmp_path}", f"export WA_ARCHIVE_DATA_DIR={tmp_path}/data"]
    assert cli_command(tmp_path) == str(Path(sys.executable).parent / "wa-archive")
    (tmp_path / ".venv").symlink_to(VENV)
    assert cli_command(tmp_path) == ".venv/bin/wa-archive"
