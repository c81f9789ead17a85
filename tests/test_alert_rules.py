"""The alert rules, scrape config and Grafana dashboard in deploy/: well-formed, and naming only metrics a
running stack exports (the webhook's /metrics and the worker's, scraped here after a message is archived)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from tests.metered import metered_fixture, scrape  # noqa: F401 - the `metered` fixture
from wa_archive.sources.meta.samples import dumps, envelope, message, wamid

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
README = Path(__file__).resolve().parent.parent / "README.md"
# Series Prometheus makes itself rather than scrapes.
PROMETHEUS_OWN = {"up"}
METRIC = re.compile(r"\b((?:wa_archive|temporal)_[a-z0-9_]+|up)\b")


def alert_rules() -> list[dict]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "wa-archive.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_alert_rules_are_well_formed():
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    assert set(doc) == {"groups"} and doc["groups"]
    names = []
    for group in doc["groups"]:
        assert set(group) == {"name", "rules"} and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert isinstance(rule["alert"], str) and isinstance(rule["expr"], str) and rule["expr"].strip()
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
            if "for" in rule:
                assert re.fullmatch(r"\d+[smhd]", rule["for"]), rule
            assert rule["labels"]["severity"] in ("critical", "warning")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            names.append(rule["alert"])
    assert len(names) == len(set(names))
    # What the issue asks an operator be paged for, each by the metric that shows it.
    by_metric = {name: [r["alert"] for r in alert_rules() if name in r["expr"]] for name in (
        "wa_archive_critical_failures_total", "wa_archive_last_delivery_timestamp_seconds",
        "wa_archive_deliveries_awaiting_handoff", "wa_archive_ledger_unsigned_age_seconds",
        "wa_archive_retrieval_test_last_ok", "wa_archive_retrieval_test_last_timestamp_seconds",
        "wa_archive_storage_check_last_ok", 'up{job="wa-archive-worker"}')}
    assert all(by_metric.values()), by_metric


def test_scrape_config_and_provisioning_point_at_the_shipped_files():
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {job["job_name"]: [(d["names"], d["type"], d["port"]) for d in job["dns_sd_configs"]]
               for job in config["scrape_configs"]}
    assert targets == {"wa-archive-webhook": [(["webhook"], "A", 8080)], "wa-archive-worker": [(["worker"], "A", 9464)]}
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "wa-archive.yml").read_text())
    assert provider["providers"][0]["type"] == "file"
    source = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = source["datasources"][0]["uid"]
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "wa-archive.json").read_text())
    assert dashboard["uid"] and dashboard["panels"]
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {uid}


async def test_every_metric_named_in_rules_and_dashboard_is_exported(metered):
    stack, worker = metered
    mid = wamid()
    assert (await stack.post(dumps(envelope([message("text", {"body": "for the SDK metrics"}, mid=mid)]))))[0] == 200
    await stack.wait_for_message(mid)
    exported: set[str] = set()
    for url in (f"{stack.url}/metrics", f"{worker}/metrics"):
        samples, _ = await scrape(stack, url)
        exported |= {name for name, _ in samples}
    named = {m for expr in [r["expr"] for r in alert_rules()] + dashboard_expressions() for m in METRIC.findall(expr)}
    assert any(n.startswith("temporal_") for n in named)  # the dashboard shows the SDK's metrics too
    assert named - exported - PROMETHEUS_OWN == set()
    # And every metric of the archive's own is documented.
    readme = README.read_text()
    families = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in exported if n.startswith("wa_archive_")}
    assert {f for f in families if f not in readme} == set()
