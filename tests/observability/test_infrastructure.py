"""The example alert rules and Grafana dashboard: they load, and every metric, label and label value
they name is one the service exposes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gitops_sync.service.metrics import Metrics
from gitops_sync.service.outcomes import CycleOutcome
from support import ROOT

RULES = ROOT / "infrastructure" / "prometheus" / "gitops-sync-alerts.yml"
DASHBOARD = ROOT / "infrastructure" / "grafana" / "gitops-sync-dashboard.json"
ADDED_BY_PROMETHEUS = {"job", "instance", "le"}
SELECTOR = re.compile(r"\b(gitops_sync_[a-z0-9_]+)(\{[^}]*\})?")
MATCHER = re.compile(r'([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def exposed() -> dict[str, dict[str, set[str]]]:
    """Every sample name the service exposes, with the values each of its labels takes."""
    metrics = Metrics()
    now = datetime.now(UTC)
    metrics.cycle_finished(CycleOutcome(trigger="start", started_at=now, finished_at=now, result="applied"))
    body, _ = metrics.exposition(None)
    samples: dict[str, dict[str, set[str]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = samples.setdefault(sample.name, {})
            for name, value in sample.labels.items():
                labels.setdefault(name, set()).add(value)
    return samples


def balanced(expr: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for char in re.sub(r'"[^"]*"', '""', expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def check_expression(expr: str, samples: dict[str, dict[str, set[str]]]) -> None:
    assert balanced(expr), expr
    named = SELECTOR.findall(expr)
    assert named, f"names no gitops-sync metric: {expr}"
    labels_in_expr: set[str] = set()
    for name, selector in named:
        assert name in samples, f"{name} is not exposed"
        labels = samples[name]
        labels_in_expr |= labels.keys()
        for label, op, value in MATCHER.findall(selector):
            if label in ADDED_BY_PROMETHEUS:
                continue
            assert label in labels, f"{name} has no label {label}"
            if op == "=":
                assert value in labels[label], f"{name}{{{label}}} never is {value!r}"
            elif op == "=~" and "$" not in value:
                assert set(value.split("|")) <= labels[label], f"{name}{{{label}=~{value!r}}}"
    for grouping in GROUPING.findall(expr):
        for label in (part.strip() for part in grouping.split(",")):
            assert label in labels_in_expr | ADDED_BY_PROMETHEUS, f"grouping by unknown label {label}"


def rules() -> Iterator[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    for group in document["groups"]:
        assert group["name"]
        yield from group["rules"]


def test_the_alert_rules_load_and_name_only_exposed_metrics() -> None:
    samples = exposed()
    loaded = list(rules())
    assert {rule["alert"] for rule in loaded} >= {
        "GitOpsSyncStale",
        "GitOpsSyncManifestsInvalid",
        "GitOpsSyncNoLeader",
    }
    for rule in loaded:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
        assert re.fullmatch(r"[A-Z][A-Za-z]+", rule["alert"])
        assert re.fullmatch(r"\d+[smhd]", rule.get("for", "0s"))
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"]
        check_expression(rule["expr"], samples)


def test_the_dashboard_loads_and_charts_only_exposed_metrics() -> None:
    samples = exposed()
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    charted: set[str] = set()
    for panel in panels:
        for target in panel["targets"]:
            check_expression(target["expr"], samples)
            charted.update(name for name, _ in SELECTOR.findall(target["expr"]))
    families = {re.sub(r"_(bucket|count|sum)$", "", name) for name in samples}
    charted_families = {re.sub(r"_bucket$", "", name) for name in charted}
    assert families - charted_families == {"gitops_sync_build_info"}  # it names the job variable's values


@pytest.mark.parametrize("expr", ["sum(gitops_sync_nope)", 'gitops_sync_cycles_total{result="ok"}', "max(("])
def test_the_check_catches_what_it_should(expr: str) -> None:
    with pytest.raises(AssertionError):
        check_expression(expr, exposed())
