"""Configuration errors name the variable, and the CLI reports them in one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from wa_archive.config import load_settings
from wa_archive.errors import ConfigError


class TestConfig:
    def test_invalid_value_names_the_variable(self, monkeypatch):
        monkeypatch.setenv("WA_ARCHIVE_HTTP_PORT", "eighty")
        with pytest.raises(ConfigError, match="WA_ARCHIVE_HTTP_PORT"):
            load_settings()

    def test_bad_storage_url(self, monkeypatch):
        monkeypatch.setenv("WA_ARCHIVE_STORAGE_URL", "ftp://x")
        with pytest.raises(ConfigError, match="WA_ARCHIVE_STORAGE_URL"):
            load_settings()

    def test_cli_fails_with_one_clear_line(self, tmp_path):
        env = {**os.environ, "WA_ARCHIVE_RETRY_MAX_ATTEMPTS": "0", "WA_ARCHIVE_DATA_DIR": str(tmp_path)}
        proc = subprocess.run([sys.executable, "-m", "wa_archive.cli", "failures"], env=env,
                              capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 2
        assert proc.stderr.strip().count("\n") == 0 and "WA_ARCHIVE_RETRY_MAX_ATTEMPTS" in proc.stderr

    def test_show_without_database_says_what_to_do(self, tmp_path):
        env = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
        env["WA_ARCHIVE_DATA_DIR"] = str(tmp_path)
        proc = subprocess.run([sys.executable, "-m", "wa_archive.cli", "show", "wamid.x"], env=env,
                              capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 2 and "WA_ARCHIVE_DATABASE_URL" in proc.stderr
