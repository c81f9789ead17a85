"""What docker-compose.yml promises about Temporal: its UI is on loopback, reads without writing unless an
operator turns writes on, decodes only through the archive's codec server, and histories expire."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from wa_archive.config import ENV_PREFIX, Settings
from wa_archive.credentials import GENERATED_SECRETS, GIVEN_SECRETS
from wa_archive.env_example import COMPOSE_VARIABLES, render_env_example

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


# The stack as a whole: what can be checked without a Docker engine ---------------------------------

ROOT = Path(__file__).resolve().parent.parent
SERVICES = COMPOSE["services"]
INTERPOLATED = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)")
ONE_SHOTS = {"temporal-schema", "temporal-setup", "objectstore-setup", "storage-init", "migrate"}
# The files only the observability profile mounts.
OBSERVABILITY_FILES = {"deploy/prometheus/prometheus.yml", "deploy/prometheus/alerts.yml",
                       "deploy/grafana/provisioning", "deploy/grafana/dashboards"}


def _variables(node: object) -> set[str]:
    """Every ${VAR} a part of the file interpolates ($$ is a literal dollar for the container's shell)."""
    return set(INTERPOLATED.findall(json.dumps(node)))


def test_the_file_is_valid_against_the_compose_specification_schema():
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(COMPOSE), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
    # The schema is a real check: a misspelt key is refused.
    broken = {**COMPOSE, "services": {**SERVICES, "worker": {**SERVICES["worker"], "restart_policy": "always"}}}
    assert any("restart_policy" in e.message for e in validator.iter_errors(broken))


def test_every_file_the_stack_mounts_or_builds_from_is_in_the_repository():
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith("./"):
                continue  # a named volume
            relative = source[2:]
            if relative in OBSERVABILITY_FILES:
                assert "observability" in service.get("profiles", []), (name, relative)
            assert (ROOT / relative).exists(), f"{name} mounts {source}, which is not in the repository"
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").is_file(), name
    for script in ("deploy/temporal/setup-schema.sh", "deploy/objectstore/setup.sh", "deploy/postgres/init-roles.sh"):
        text = (ROOT / script).read_text()
        assert text.startswith("#!/bin/sh\n") and "set -eu" in text, script
    policy = json.loads((ROOT / "deploy/objectstore/archive-policy.json").read_text())
    resources_named = {r for s in policy["Statement"] for r in s["Resource"]}
    assert resources_named == {"arn:aws:s3:::wa-archive", "arn:aws:s3:::wa-archive/*"}
    assert not any("Bypass" in a or a.endswith("*") or "Policy" in a and "Get" not in a
                   for s in policy["Statement"] for a in s["Action"]), "the archive's key may not lift locks"
    assert SERVICES["worker"]["environment"]["WA_ARCHIVE_STORAGE_URL"].startswith("s3://wa-archive/")


def test_wherever_the_archive_talks_to_minio_it_expects_no_storage_tiers():
    """MinIO refuses a transition to a tier it does not have, and `storage check` (also run by webhook and
    worker at start) must expect what `storage init` wrote: no transition rule."""
    on_minio = {name for name, service in SERVICES.items()
                if service.get("environment", {}).get("WA_ARCHIVE_S3_ENDPOINT_URL") == "http://objectstore:9000"}
    assert on_minio == {"storage-init", "webhook", "worker"}
    for name in on_minio:
        assert SERVICES[name]["environment"]["WA_ARCHIVE_S3_LIFECYCLE_STORAGE_CLASS"] == "none", name
    # MinIO has no public access block: the check reads the bucket policy instead, so the key may read it.
    policy = json.loads((ROOT / "deploy/objectstore/archive-policy.json").read_text())
    assert any("s3:GetBucketPolicy" in s["Action"] and s["Resource"] == ["arn:aws:s3:::wa-archive"]
               for s in policy["Statement"])


def test_every_archive_variable_is_a_setting_and_every_other_is_in_env_example():
    settings = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    given: set[str] = set()
    for service in SERVICES.values():
        given |= {k for k in service.get("environment", {}) if k.startswith(ENV_PREFIX)}
    unknown = (given | {v for v in _variables(COMPOSE) if v.startswith(ENV_PREFIX)}) - settings
    assert not unknown, f"not a setting in wa_archive/config.py: {sorted(unknown)}"
    assert SERVICES["worker"]["environment"]["WA_ARCHIVE_METRICS_PORT"] == 9464
    assert SERVICES["worker"]["environment"]["WA_ARCHIVE_METRICS_HOST"] == "0.0.0.0"  # Prometheus is another container
    others = {v for v in _variables(COMPOSE) if not v.startswith(ENV_PREFIX)}
    assert others == set(COMPOSE_VARIABLES), "env_example.COMPOSE_VARIABLES must list what compose reads"


# Who may hold which secret: the contract of least privilege. A secret used by a new service is added here.
SECRETS_BY_SERVICE = {
    "postgres": {"POSTGRES_PASSWORD", "TEMPORAL_DB_PASSWORD", "ARCHIVE_OWNER_DB_PASSWORD", "ARCHIVE_APP_DB_PASSWORD"},
    "temporal-schema": {"TEMPORAL_DB_PASSWORD"},
    "temporal": {"TEMPORAL_DB_PASSWORD"},
    "objectstore": {"OBJECTSTORE_ROOT_USER", "OBJECTSTORE_ROOT_PASSWORD", "OBJECTSTORE_KMS_SECRET_KEY"},
    "objectstore-setup": {"OBJECTSTORE_ROOT_USER", "OBJECTSTORE_ROOT_PASSWORD", "S3_ACCESS_KEY", "S3_SECRET_KEY"},
    "storage-init": {"S3_ACCESS_KEY", "S3_SECRET_KEY"},
    "migrate": {"ARCHIVE_OWNER_DB_PASSWORD"},
    "webhook": {"ARCHIVE_APP_DB_PASSWORD", "S3_ACCESS_KEY", "S3_SECRET_KEY", "WA_ARCHIVE_META_ACCESS_TOKEN",
                "WA_ARCHIVE_CONTACT_KEY_SECRET", "WA_ARCHIVE_PAYLOAD_KEYS", "WA_ARCHIVE_META_APP_SECRET",
                "WA_ARCHIVE_META_VERIFY_TOKEN", "WA_ARCHIVE_WASENDER_WEBHOOK_SECRET"},
    "worker": {"ARCHIVE_APP_DB_PASSWORD", "S3_ACCESS_KEY", "S3_SECRET_KEY", "WA_ARCHIVE_META_ACCESS_TOKEN",
               "WA_ARCHIVE_CONTACT_KEY_SECRET", "WA_ARCHIVE_PAYLOAD_KEYS", "WA_ARCHIVE_LEDGER_SIGNING_KEY",
               "WA_ARCHIVE_WASENDER_API_KEY"},
    "grafana": {"GRAFANA_ADMIN_PASSWORD"},
}


def test_each_service_is_given_only_the_secrets_it_uses():
    secret_settings = {f"{ENV_PREFIX}{s.setting.upper()}" for s in GENERATED_SECRETS} | {
        f"{ENV_PREFIX}{name.upper()}" for name in GIVEN_SECRETS}
    secrets = secret_settings | {v for v in COMPOSE_VARIABLES if "PASSWORD" in v or "KEY" in v or v.endswith("_USER")}
    for name, service in SERVICES.items():
        held = _variables(service) & secrets
        assert held == SECRETS_BY_SERVICE.get(name, set()), (name, sorted(held))
    # The archive never holds the store's administrator key, and no archive container the superuser's.
    for name in ("webhook", "worker", "migrate", "storage-init"):
        assert not _variables(SERVICES[name]) & {"OBJECTSTORE_ROOT_USER", "OBJECTSTORE_ROOT_PASSWORD",
                                                 "POSTGRES_PASSWORD", "TEMPORAL_DB_PASSWORD"}, name
    # Settings that are not secrets may come from archive.env; secrets never do (they are listed above).
    assert all(SERVICES[n]["env_file"] == [{"path": "./archive.env", "required": False}]
               for n in ("webhook", "worker", "migrate", "storage-init"))


def test_long_running_services_restart_and_report_health_and_one_shots_gate_the_app():
    for name, service in SERVICES.items():
        if name in ONE_SHOTS:
            assert service["restart"] == "no", name
            assert "healthcheck" not in service, name
        else:
            assert service.get("restart") in ("unless-stopped", "always"), f"{name} has no restart policy"
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    waited = {dep: cond["condition"] for app in ("webhook", "worker")
              for dep, cond in SERVICES[app]["depends_on"].items()}
    assert waited == {"migrate": "service_completed_successfully", "temporal-setup": "service_completed_successfully",
                      "storage-init": "service_completed_successfully"}
    assert SERVICES["temporal"]["depends_on"] == {"temporal-schema": {"condition": "service_completed_successfully"}}
    assert SERVICES["storage-init"]["command"] == ["wa-archive", "storage", "init"]
    assert SERVICES["migrate"]["command"] == ["wa-archive", "migrate"]


def test_every_image_is_pinned_and_temporal_uses_its_current_images():
    for name, service in SERVICES.items():
        if "build" in service:
            assert service["image"] == "wa-archive:local", name  # built from this repository
            continue
        image = service["image"]
        repository, _, tag = image.partition("@")[0].rpartition(":")
        assert repository and tag and tag != "latest" and "/" not in tag, f"{name}: {image} is not pinned"
    images = {SERVICES[n]["image"].split(":")[0] for n in SERVICES if "build" not in SERVICES[n]}
    assert "temporalio/auto-setup" not in images and not {"minio/minio", "minio/mc"} & images
    assert {"temporalio/server", "temporalio/admin-tools"} <= images
    assert SERVICES["temporal"]["image"].split(":")[1] == SERVICES["temporal-schema"]["image"].split(":")[1], (
        "the schema tool must match the server's version")


def test_the_observability_profile_runs_prometheus_with_the_rules_and_grafana_with_the_dashboards():
    prometheus, grafana = SERVICES["prometheus"], SERVICES["grafana"]
    assert prometheus["profiles"] == grafana["profiles"] == ["observability"]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert {"./deploy/grafana/provisioning:/etc/grafana/provisioning:ro",
            "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro"} <= set(grafana["volumes"])
    assert not any("profiles" in SERVICES[n] for n in SERVICES if n not in ("prometheus", "grafana"))


def test_env_example_lists_every_setting_with_its_default_and_is_up_to_date():
    text = (ROOT / ".env.example").read_text()
    assert text == render_env_example(), "regenerate: python -m wa_archive.env_example > .env.example"
    for name in Settings.model_fields:
        assert f"# {ENV_PREFIX}{name.upper()}=" in text, name
    assert "# WA_ARCHIVE_RETENTION_DAYS=2557\n" in text and "# WA_ARCHIVE_ALLOW_UNVERSIONED_BUCKET=false\n" in text
    assert "--kind ledger --env" in text  # how to make each secret the archive creates
