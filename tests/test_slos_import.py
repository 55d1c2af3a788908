"""Import SLOs from Sloth (prometheus/v1) and OpenSLO v1 files; refusals name the field."""

from __future__ import annotations

from typing import Any

import pytest

from firetower.auth.schemas import Role
from firetower.runtime import Runtime
from tests.factories import ApiUser, Factory, row_counts

PROM = "http://prometheus.example:9090"

SLOTH = """
version: "prometheus/v1"
service: "payments"
labels:
  team: money
slos:
  - name: "requests-availability"
    objective: 99.9
    description: "Payment requests answered without a 5xx."
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="payments",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="payments"}[{{.window}}]))
    alerting:
      name: PaymentsErrors
      page_alert:
        labels: {severity: critical}
  - name: "webhook-delivery"
    objective: 99
    sli:
      events:
        error_query: sum(rate(webhook_failures_total[{{ .window }}]))
        total_query: sum(rate(webhook_attempts_total[{{.window}}]))
"""

OPENSLO = """
apiVersion: openslo/v1
kind: Service
metadata:
  name: search
spec:
  description: ignored, the catalog says what services exist
---
apiVersion: openslo/v1
kind: SLI
metadata:
  name: search-good-queries
spec:
  ratioMetric:
    counter: true
    good:
      metricSource:
        type: Prometheus
        spec:
          query: sum(rate(search_queries_total{outcome="ok"}[{{window}}]))
    total:
      metricSource:
        type: Prometheus
        spec:
          query: sum(rate(search_queries_total[{{window}}]))
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: search-availability
  displayName: Search availability
spec:
  description: Queries that return results.
  service: search
  indicatorRef: search-good-queries
  timeWindow:
    - duration: 4w
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - displayName: good
      target: 0.995
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: search-errors
spec:
  service: search
  indicator:
    metadata:
      name: search-5xx
    spec:
      ratioMetric:
        counter: true
        bad:
          metricSource:
            type: prometheus
            spec:
              query: sum(rate(search_http_total{code=~"5.."}[{{window}}]))
        total:
          metricSource:
            type: Prometheus
            spec:
              query: sum(rate(search_http_total[{{window}}]))
  timeWindow:
    - duration: 7d
      isRolling: true
  objectives:
    - targetPercent: 99.95
"""


def _import(user: ApiUser, content: str, **extra: object) -> Any:
    return user.post(
        "/api/v1/slos/import", json={"content": content, "prometheus_url": PROM, **extra}
    )


def test_a_sloth_file_imports_and_reimports_idempotently(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    factory.service("payments")
    answer = _import(responder, SLOTH)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "format": "sloth",
        "created": ["payments-requests-availability", "payments-webhook-delivery"],
        "updated": [],
        "unchanged": [],
    }
    slo = responder.get("/api/v1/slos/payments-requests-availability").json()
    assert slo["service"] == "payments"
    assert slo["objective_percent"] == 99.9
    assert slo["window_days"] == 30
    assert slo["description"] == "Payment requests answered without a 5xx."
    assert slo["sli"] == {
        "kind": "prometheus",
        "url": PROM,
        "error_query": 'sum(rate(http_requests_total{job="payments",code=~"5.."}[{{window}}]))',
        "total_query": 'sum(rate(http_requests_total{job="payments"}[{{window}}]))',
    }
    webhook = responder.get("/api/v1/slos/payments-webhook-delivery").json()
    assert webhook["sli"]["error_query"] == "sum(rate(webhook_failures_total[{{window}}]))"

    again = _import(responder, SLOTH.replace("objective: 99\n", "objective: 98.5\n"))
    assert again.json()["updated"] == ["payments-webhook-delivery"]
    assert again.json()["unchanged"] == ["payments-requests-availability"]
    assert (
        responder.get("/api/v1/slos/payments-webhook-delivery").json()["objective_percent"] == 98.5
    )


def test_an_openslo_file_imports_inline_and_referenced_indicators(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    factory.service("search")
    answer = _import(responder, OPENSLO)
    assert answer.status_code == 200, answer.text
    assert answer.json()["format"] == "openslo"
    assert answer.json()["created"] == ["search-availability", "search-errors"]

    availability = responder.get("/api/v1/slos/search-availability").json()
    assert availability["objective_percent"] == 99.5
    assert availability["window_days"] == 28
    assert availability["description"] == "Queries that return results."
    assert availability["sli"]["good_query"] == (
        'sum(rate(search_queries_total{outcome="ok"}[{{window}}]))'
    )
    assert "error_query" not in availability["sli"]

    errors = responder.get("/api/v1/slos/search-errors").json()
    assert errors["objective_percent"] == 99.95
    assert errors["window_days"] == 7
    assert errors["sli"]["error_query"] == 'sum(rate(search_http_total{code=~"5.."}[{{window}}]))'


def test_openslo_metadata_and_sli_descriptions_are_read_and_ignored(factory: Factory) -> None:
    """Real OpenSLO files carry labels, annotations, namespaces and SLI descriptions."""
    responder = factory.user(Role.responder)
    factory.service("search")
    metadata = "  namespace: prod\n  labels: {team: search}\n  annotations: {owner: ana}\n"
    content = (
        OPENSLO.replace("  name: search-good-queries\n", "  name: search-good-queries\n" + metadata)
        .replace("  name: search-availability\n", "  name: search-availability\n" + metadata)
        .replace(
            "      name: search-5xx\n",
            "      name: search-5xx\n      displayName: 5xx\n      labels: {a: b}\n",
        )
        .replace(
            "    spec:\n      ratioMetric:", "    spec:\n      description: 5xx\n      ratioMetric:"
        )
        .replace("spec:\n  ratioMetric:", "spec:\n  description: good queries\n  ratioMetric:")
    )
    assert content.count("namespace: prod") == 2 and content.count("description:") == 4
    answer = _import(responder, content)
    assert answer.status_code == 200, answer.text
    assert answer.json()["created"] == ["search-availability", "search-errors"]
    availability = responder.get("/api/v1/slos/search-availability").json()
    assert availability["description"] == "Queries that return results."


def _openslo_with(old: str, new: str) -> str:
    assert old in OPENSLO
    return OPENSLO.replace(old, new, 1)


@pytest.mark.parametrize(
    ("content", "extra", "field"),
    [
        ("version: [unclosed", {}, "content"),
        ("kind: Something\n", {}, "content"),
        (SLOTH.replace('service: "payments"', 'service: "nowhere"'), {}, "service"),
        (SLOTH.replace("objective: 99.9", "objective: 100"), {}, "slos[0].objective"),
        (SLOTH.replace("objective: 99.9", "objective: true"), {}, "slos[0].objective"),
        (SLOTH.replace("objective: 99.9", 'objective: "99.9"'), {}, "slos[0].objective"),
        (
            SLOTH.replace(
                "      events:\n        error_query: sum(rate(webhook",
                "      raw:\n        error_ratio_query: sum(rate(webhook",
                1,
            ).replace("        total_query: sum(rate(webhook_attempts_total[{{.window}}]))\n", ""),
            {},
            "slos[1].sli.raw",
        ),
        (
            SLOTH.replace("[{{.window}}]))\n    alerting", "[5m]))\n    alerting"),
            {},
            "slos[0].sli.events.total_query",
        ),
        (
            SLOTH.replace('  - name: "webhook-delivery"', '  - name: "Webhook Delivery"'),
            {},
            "slos[1].name",
        ),
        (SLOTH + "extra: 1\n", {}, "extra"),
        # Sloth never pages for this SLO; firetower would have opened SEV2 incidents for it.
        (
            SLOTH.replace("labels: {severity: critical}", "disable: true"),
            {},
            "slos[0].alerting.page_alert.disable",
        ),
        (
            SLOTH.replace("page_alert:\n", "ticket_alert:\n").replace(
                "labels: {severity: critical}", "disable: true"
            ),
            {},
            "slos[0].alerting.ticket_alert.disable",
        ),
        (SLOTH, {"prometheus_url": None}, "prometheus_url"),
        (
            _openslo_with("budgetingMethod: Occurrences", "budgetingMethod: Timeslices"),
            {},
            "spec.budgetingMethod",
        ),
        (
            _openslo_with("      isRolling: true", "      isRolling: false"),
            {},
            "spec.timeWindow[0].isRolling",
        ),
        (_openslo_with("duration: 4w", "duration: 1M"), {}, "spec.timeWindow[0].duration"),
        (_openslo_with("target: 0.995", "target: 99.5"), {}, "spec.objectives[0].target"),
        (
            _openslo_with("targetPercent: 99.95", "targetPercent: true"),
            {},
            "spec.objectives[0].targetPercent",
        ),
        (
            _openslo_with("targetPercent: 99.95", 'targetPercent: "99.95"'),
            {},
            "spec.objectives[0].targetPercent",
        ),
        (
            _openslo_with("targetPercent: 99.95", "targetPercent: 100"),
            {},
            "spec.objectives[0].targetPercent",
        ),
        (
            _openslo_with("indicatorRef: search-good-queries", "indicatorRef: nothing"),
            {},
            "spec.indicatorRef",
        ),
        (
            _openslo_with("type: prometheus", "type: Datadog"),
            {},
            "spec.indicator.spec.ratioMetric.bad.metricSource.type",
        ),
        (
            _openslo_with(
                "      ratioMetric:\n        counter: true\n        bad:",
                "      thresholdMetric:\n        counter: true\n        bad:",
            ),
            {},
            "spec.indicator.spec.thresholdMetric",
        ),
        (_openslo_with("kind: Service", "kind: AlertPolicy"), {}, "kind"),
        (
            _openslo_with("  displayName: Search availability", "  owner: search-team"),
            {},
            "metadata.owner",
        ),
        (
            _openslo_with("      name: search-5xx", "      name: search-5xx\n      bogus: 1"),
            {},
            "spec.indicator.metadata.bogus",
        ),
        (
            _openslo_with(
                "      ratioMetric:\n        counter: true",
                "      ratioMetric:\n        counter: false",
            ),
            {},
            "spec.indicator.spec.ratioMetric.counter",
        ),
        (
            _openslo_with(
                "  name: search-good-queries\n", "  name: search-good-queries\nstatus: {}\n"
            ),
            {},
            "status",
        ),
        (
            _openslo_with(
                "  name: search-good-queries\n", "  name: search-good-queries\n  bogus: 1\n"
            ),
            {},
            "metadata.bogus",
        ),
        (
            _openslo_with(
                "apiVersion: openslo/v1\nkind: SLI", "apiVersion: openslo/v1alpha\nkind: SLI"
            ),
            {},
            "apiVersion",
        ),
        (
            _openslo_with("  service: search\n  indicator:", "  service: nowhere\n  indicator:"),
            {},
            "spec.service",
        ),
    ],
)
def test_unsupported_or_bad_files_are_refused_naming_the_field(
    factory: Factory, runtime: Runtime, content: str, extra: dict[str, object], field: str
) -> None:
    responder = factory.user(Role.responder)
    factory.service("payments")
    factory.service("search")
    before = row_counts(runtime)
    answer = _import(responder, content, **extra)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field, answer.json()
    assert field in answer.json()["detail"] or field == "content"
    assert row_counts(runtime) == before


def test_a_bad_openslo_sli_reference_points_at_its_own_document(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    factory.service("search")
    broken = _openslo_with(
        "          query: sum(rate(search_queries_total[{{window}}]))",
        "          query: sum(rate(search_queries_total[1h]))",
    )
    answer = _import(responder, broken)
    assert answer.status_code == 422
    problem = answer.json()
    assert problem["field"] == "spec.ratioMetric.total.metricSource.spec.query"
    assert problem["detail"].startswith("document 2: ")
    assert problem["document"] == 2


def test_two_openslo_slis_of_one_name_are_refused(factory: Factory, runtime: Runtime) -> None:
    """The second silently replaced the first: an indicatorRef read whichever came last."""
    responder = factory.user(Role.responder)
    factory.service("search")
    start = OPENSLO.index("apiVersion: openslo/v1\nkind: SLI")
    end = OPENSLO.index("---", start)
    twice = OPENSLO[:end] + "---\n" + OPENSLO[start:end].replace('outcome="ok"', 'outcome="any"')
    twice += OPENSLO[end:]
    before = row_counts(runtime)
    answer = _import(responder, twice)
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["field"] == "metadata.name"
    assert problem["document"] == 3
    assert problem["detail"] == (
        "document 3: metadata.name: an SLI named 'search-good-queries' is already in document 2"
    )
    assert row_counts(runtime) == before
