"""What docker-compose.yml promises about Temporal: its UI is on loopback, reads without writing unless an
operator turns writes on, decodes only through the archive's codec server, and histories expire."""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = yaml.safe_load((Path(__file__).resolve().parent.parent / "docker-compose.yml").read_text())


def test_the_temporal_ui_is_on_loopback_read_only_and_decodes_through_the_codec_server():
    ui = COMPOSE["services"]["temporal-ui"]
    assert ui["ports"] == ["127.0.0.1:8233:8080"]
    env = ui["environment"]
    assert env["TEMPORAL_DISABLE_WRITE_ACTIONS"] == "${TEMPORAL_UI_DISABLE_WRITE_ACTIONS:-true}"
    assert env["TEMPORAL_CODEC_ENDPOINT"].endswith("/ui/codec") and env["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] == "true"
    webhook = COMPOSE["services"]["webhook"]["environment"]
    assert webhook["WA_ARCHIVE_TEMPORAL_UI_ORIGIN"] == "${WA_ARCHIVE_TEMPORAL_UI_ORIGIN:-http://127.0.0.1:8233}"


def test_every_service_that_talks_to_temporal_encrypts_and_the_namespace_keeps_histories_30_days():
    for name in ("webhook", "worker"):
        assert "WA_ARCHIVE_PAYLOAD_KEYS" in COMPOSE["services"][name]["environment"], name
    setup = " ".join(COMPOSE["services"]["temporal-setup"]["command"])
    assert "temporal operator namespace update" in setup
    assert "--retention $$(( ${WA_ARCHIVE_TEMPORAL_RETENTION_DAYS:-30} * 24 ))h" in setup
