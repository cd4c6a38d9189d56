"""deploy/grafana/sluice-dashboard.json and the alert rules, against the gateway: every query
is PromQL that ``promtool`` accepts, and every series, label and label value it names is in
what a real gateway exports once it has run a few sessions (complete, errored, stalled,
cancelled, refused, a connection cut by the client bounds)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from sluice import errors
from sluice.gateway.metrics import GatewayMetrics
from sluice.session.recovery import GATEWAY_LOST, NODE_LOST
from sluice.session.telemetry import StreamClock
from tests.conftest import LONG, running_gateway, start, tokens_when_running
from tests.conftest import test_settings as gateway_settings
from tests.deploy.promql import Exposition, Query, parse, read_exposition
from tests.proxies.servers import system_binary

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "sluice-dashboard.json"
RULES = REPO / "deploy" / "prometheus" / "sluice-alerts.yml"

#: what Grafana puts in place of its variables before the query reaches Prometheus
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "6h",
    "$provider": ".*",
    "$model": ".*",
}
#: series Prometheus makes itself, and the labels it adds to every series it scrapes
PROMETHEUS_SERIES = {"up": {"job": {"sluice"}, "instance": set()}}
TARGET_LABELS = {"job", "instance"}
LABEL_VALUES = re.compile(r"^label_values\((?:(\w+)(\{[^}]*\})?,\s*)?(\w+)\)$")


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, expr) of every panel target, Grafana's variables substituted."""
    found = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            where = f"panel {panel['id']} {panel['title']!r} {target['refId']}"
            found.append((where, substitute(target["expr"])))
    return found


def alert_queries() -> list[tuple[str, str]]:
    data = yaml.safe_load(RULES.read_text())
    return [
        (f"alert {rule['alert']}", rule["expr"])
        for group in data["groups"]
        for rule in group["rules"]
    ]


def variable_queries() -> list[tuple[str, str]]:
    return [
        (f"variable ${v['name']}", substitute(v["definition"]))
        for v in dashboard()["templating"]["list"]
        if v["type"] == "query"
    ]


def substitute(expr: str) -> str:
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    assert "$" not in expr, f"a Grafana variable with no stand-in: {expr}"
    return expr


# -- the dashboard's shape ---------------------------------------------------------------------


def test_the_dashboard_is_grafana_json_with_a_query_per_panel() -> None:
    data = dashboard()
    assert data["uid"] == "sluice-gateway" and data["schemaVersion"] >= 36
    panels = data["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"provider", "model"} <= set(variables)
    titles = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        titles.add(panel["title"])
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert target["expr"].strip(), panel["title"]
    # what the dashboard is for
    for wanted in (
        "Live sessions",
        "Sessions ended by state",
        "Time to first token",
        "Time per output token",
        "Error rate by type",
        "Stalled streams",
        "Backpressure",
        "Relayed events / s",
        "Spend rate",
        "Rejections",
    ):
        assert wanted in titles, wanted


def test_the_panels_filter_by_the_provider_and_model_variables() -> None:
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            if any(f"sluice_{name}" in expr for name in ("time_", "cost_usd", "stream_")):
                assert 'model=~"$model"' in expr, panel["title"]
            if "provider" in expr:
                assert 'provider=~"$provider"' in expr, panel["title"]


# -- promtool parses every query ---------------------------------------------------------------


def test_every_query_is_promql_that_promtool_accepts(tmp_path: Path) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 20
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"sluice_dashboard:query_{index}", "expr": expr}
                    for index, (_where, expr) in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run(
        [system_binary("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(queries)} rules found" in done.stdout
    # and a broken one is refused: the check can fail
    path.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum by (a (b)"}]}]}
        )
    )
    done = subprocess.run(
        [system_binary("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0


# -- the names, against a real gateway's /metrics ----------------------------------------------


def known_values() -> dict[str, set[str]]:
    """Label values the gateway gives that a short run does not show: every error and refusal
    type, and every backpressure level."""
    types = {
        cls.type
        for cls in _subclasses(errors.SluiceError)
        if isinstance(getattr(cls, "type", None), str)
    }
    types |= {errors.classify_status(s)[0] for s in (400, 401, 404, 408, 429, 500, 503, 529)}
    types |= {GATEWAY_LOST, NODE_LOST}
    levels = set()
    for blocked in (0.0, 0.3, 0.9):
        clock = StreamClock(0.0)
        clock.upstream_open, clock.ended, clock.blocked = 0.0, 1.0, blocked
        levels.add(clock.backpressure())
    return {"type": types, "level": levels}


def _subclasses(cls: type) -> list[type]:
    return [cls, *(s for sub in cls.__subclasses__() for s in _subclasses(sub))]


def problems(where: str, query: Query, exposition: Exposition) -> list[str]:
    """What ``query`` names that the exposition lacks."""
    found: list[str] = []
    series = {**exposition.series, **PROMETHEUS_SERIES}
    vocabulary = known_values()
    assert query.selectors, f"{where}: no series"
    for selector in query.selectors:
        labels = series.get(selector.name)
        if labels is None:
            hint = exposition.hint(selector.name)
            found.append(f"{where}: no series {selector.name}" + (f" ({hint})" if hint else ""))
            continue
        for matcher in selector.matchers:
            if matcher.label not in labels and matcher.label not in TARGET_LABELS:
                found.append(f"{where}: {selector.name} has no label {matcher.label}")
            elif matcher.op == "=" and matcher.label in labels:
                values = labels[matcher.label] | vocabulary.get(matcher.label, set())
                if values and matcher.value not in values:
                    found.append(
                        f"{where}: {selector.name}{{{matcher.label}={matcher.value!r}}} is "
                        f"never exported (seen: {sorted(values)[:12]})"
                    )
    for grouping in query.groupings:
        available = set(TARGET_LABELS)
        for name in grouping.series:
            available |= set(series.get(name, {}))
        missing = set(grouping.labels) - available
        if missing:
            found.append(
                f"{where}: {grouping.keyword} ({', '.join(grouping.labels)}) names "
                f"{sorted(missing)}, not a label of {sorted(grouping.series)}"
            )
    return found


def label_values_problems(where: str, definition: str, exposition: Exposition) -> list[str]:
    match = LABEL_VALUES.match(definition)
    assert match is not None, f"{where}: not label_values(metric, label): {definition}"
    name, _matchers, label = match.groups()
    labels = exposition.series.get(name or "")
    if labels is None:
        return [f"{where}: no series {name}"]
    return [] if label in labels else [f"{where}: {name} has no label {label}"]


async def exercised_exposition(tmp_path: Path) -> str:
    """/metrics of a gateway that has run a complete, an errored, a stalled and a cancelled
    session, refused a request and cut a connection whose head was too large."""
    settings = gateway_settings(tmp_path)
    settings.streams.stall_timeout = 0.5
    async with running_gateway(settings) as gw:
        done = await start(gw, "sim/support")
        failed = await start(gw, "sim/error-mid-stream")
        stalled = await start(
            gw, "sim/stall", headers={"x-sim-stall-after": "3", "x-sim-stall-seconds": "5"}
        )
        stopped = await start(gw, "sim/support", headers=LONG)
        await tokens_when_running(gw, stopped)
        cancelled = await gw.http.post(f"/api/sessions/{stopped}/cancel")
        assert cancelled.json()["cancelled"] is True
        records = [await gw.final_record(sid) for sid in (done, failed, stalled, stopped)]
        assert [r["state"] for r in records] == ["complete", "errored", "errored", "cancelled"]
        assert records[2]["error"]["type"] == "upstream_stalled"
        refused = await gw.http.post(
            "/v1/chat/completions",
            json={"model": "nowhere/model", "messages": [{"role": "user", "content": "Hi"}]},
        )
        assert refused.status_code == 404
        padded = await gw.http.get("/healthz", headers={"x-pad": "a" * 40_000})
        assert padded.status_code == 431
        response = await gw.http.get("/metrics")
        assert response.status_code == 200
        return response.text


async def test_every_series_and_label_the_queries_name_is_exported(tmp_path: Path) -> None:
    exposition = read_exposition(await exercised_exposition(tmp_path))
    # the run produced what the queries look at
    assert "upstream_stalled" in exposition.series["sluice_session_errors_total"]["type"]
    assert (
        "header_too_large" in exposition.series["sluice_client_connections_closed_total"]["reason"]
    )
    found = []
    for where, expr in [*dashboard_queries(), *alert_queries()]:
        found += problems(where, parse(expr), exposition)
    for where, definition in variable_queries():
        found += label_values_problems(where, definition, exposition)
    assert not found, "\n".join(found)


def test_a_query_naming_what_is_not_exported_is_caught() -> None:
    metrics = GatewayMetrics()
    metrics.sessions.labels("sim", "complete").inc()
    metrics.errors.labels("sim", "upstream_error").inc()
    metrics.ttft.labels("sim", "support").observe(0.2)
    metrics.events.labels("sim").inc(3)
    exposition = read_exposition(metrics.render().decode())
    wrong = {
        "a histogram without its suffix": "rate(sluice_time_to_first_token_seconds[5m])",
        "a counter without _total": "rate(sluice_sessions[5m])",
        "a label it does not have": "sum by (model) (rate(sluice_session_errors_total[5m]))",
        "a matcher on a label it lacks": 'sluice_relayed_events_total{model="x"}',
        "a type never exported": 'sluice_session_errors_total{type="upstream_stall"}',
        "le on a counter": 'sluice_sessions_total{le="0.5"}',
        "a series of no family": "rate(sluice_no_such_total[5m])",
    }
    for what, expr in wrong.items():
        assert problems(what, parse(expr), exposition), what
    assert "family sluice_time_to_first_token_seconds is a histogram" in " ".join(
        problems("x", parse("sluice_time_to_first_token_seconds_total"), exposition)
    )
    right = (
        "sum by (le, model) (rate(sluice_time_to_first_token_seconds_bucket[5m]))"
        ' / on (provider) group_left sum by (provider) (sluice_sessions_total{state="complete"})'
    )
    assert problems("right", parse(right), exposition) == []
