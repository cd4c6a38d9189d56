"""deploy/prometheus: the alert rules pass ``promtool check rules`` and fire, in
``promtool test rules``, on the series they are about; the scrape configuration passes
``promtool check config``; every alert says how severe it is, what it means and where the
runbook says what to do."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from sluice.gateway.markdown import render_markdown
from tests.proxies.servers import system_binary

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS / "sluice-alerts.yml"
RULE_TESTS = PROMETHEUS / "sluice-alerts.test.yml"
RUNBOOK = REPO / "docs" / "runbook.md"
SEVERITIES = {"critical", "warning", "info"}


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [system_binary("promtool"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def alert_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"] if "alert" in rule]


def test_the_alert_rules_pass_promtool_check_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_the_alerts_fire_on_synthetic_series_and_stay_silent_otherwise() -> None:
    done = promtool("test", "rules", RULE_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_a_broken_rule_is_caught_by_promtool(tmp_path: Path) -> None:
    # the check above can fail: a rule with a PromQL error does not pass
    broken = tmp_path / "broken.yml"
    text = RULES.read_text().replace("> 0.05", "> > 0.05", 1)
    assert text != RULES.read_text()
    broken.write_text(text)
    done = promtool("check", "rules", str(broken))
    assert done.returncode != 0


def test_every_alert_is_exercised_by_the_rule_tests() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())
    firing = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert firing == {rule["alert"] for rule in alert_rules()}


def test_the_scrape_configuration_passes_promtool_check_config() -> None:
    done = promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == [RULES.name]
    # the job name the rules expect
    assert [job["job_name"] for job in config["scrape_configs"]] == ["sluice"]
    assert 'up{job="sluice"}' in RULES.read_text()


def test_every_alert_has_a_severity_a_summary_and_a_runbook_section() -> None:
    html = render_markdown(RUNBOOK.read_text(encoding="utf-8"), anchors=True)
    anchors = set(re.findall(r'<h[1-6] id="([^"]+)"', html))
    rules = alert_rules()
    assert len(rules) >= 7
    for rule in rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert rule.get("for") or rule["labels"]["severity"] == "info", name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        url = annotations["runbook_url"]
        assert url.startswith("https://sluice.example.com/runbook#"), name
        anchor = url.split("#", 1)[1]
        assert anchor in anchors, f"{name}: docs/runbook.md has no section #{anchor}"
