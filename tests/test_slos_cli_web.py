"""`firetower slo ...` against a live server, and the console's SLO and SLA pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from firetower.auth.schemas import Role
from firetower.clock import FrozenClock
from firetower.runtime import Runtime
from firetower.web.slo_pages import budget_chart
from tests.cli_support import error_line, json_of, run_cli
from tests.factories import ApiUser, Factory
from tests.slo_support import evaluate_all, events_slo, push, slo_alerts
from tests.test_slos_import import OPENSLO, SLOTH

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def test_slo_import_status_and_report_commands(
    server_url: str, factory: Factory, runtime: Runtime, tmp_path: Path
) -> None:
    responder = factory.user(Role.responder)
    factory.service("payments")
    factory.service("search")
    cli = {"url": server_url, "token": responder.token}
    sloth = tmp_path / "payments.sloth.yaml"
    sloth.write_text(SLOTH)
    imported = run_cli(
        ["slo", "import", str(sloth), "--prometheus-url", "http://127.0.0.1:9"], **cli
    )
    assert imported.exit_code == 0, imported.output
    assert imported.stdout.splitlines() == [
        "imported (sloth): 2 created",
        "  created: payments-requests-availability",
        "  created: payments-webhook-delivery",
    ]
    openslo = run_cli(
        ["slo", "import", "-", "--prometheus-url", "http://127.0.0.1:9", "--json"],
        input=OPENSLO,
        **cli,
    )
    assert json_of(openslo)["created"] == ["search-availability", "search-errors"]

    refused = run_cli(
        ["slo", "import", "-", "--prometheus-url", "http://127.0.0.1:9"],
        input=OPENSLO.replace("budgetingMethod: Occurrences", "budgetingMethod: Timeslices"),
        **cli,
    )
    assert refused.exit_code == 1
    assert error_line(refused) == (
        "error: document 3: spec.budgetingMethod: 'Timeslices' is not supported (Occurrences is)"
    )

    events_slo(responder, "payments-events", "payments")
    with FrozenClock(T0):
        push(responder, "payments-events", 990, 10)  # 1 %: 10x over three nines
        evaluate_all(runtime)
    listed = run_cli(["slo", "status"], **cli)
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.stdout.splitlines() if "payments-events" in line)
    assert re.search(r"99\.9% / 30d\s+│?\s*pushed events\s+│?\s*-900\.00%\s+│?\s*10\.00x", row), row
    assert "page" in row  # 10x over 6h and 30m
    one = run_cli(["slo", "status", "payments-events"], **cli)
    assert one.stdout.splitlines()[0] == "payments-events (payments): page"
    assert "burn rates: 5m 10.00x, 30m 10.00x, 1h 10.00x" in one.stdout
    as_json = json_of(run_cli(["slo", "status", "payments-events", "--json"], **cli))
    assert as_json["state"] == "page"
    missing = run_cli(["slo", "status", "nothing"], **cli)
    assert error_line(missing) == "error: no SLO named 'nothing'"

    responder.put(
        "/api/v1/sla/targets",
        json={
            "service": "payments",
            "kind": "uptime",
            "target_percent": 99.5,
            "slo": "payments-events",
        },
    )
    report = run_cli(["slo", "report", "2026-11"], **cli)
    assert report.exit_code == 0, report.output
    assert "SLA 2026-11" in report.stdout
    line = next(line for line in report.stdout.splitlines() if "payments" in line)
    assert "99.000%" in line and "yes" in line
    bad_month = run_cli(["slo", "report", "2026-13"], **cli)
    assert error_line(bad_month) == "error: '2026-13' is not a month like 2026-11"


def test_the_slo_pages_show_budget_chart_burn_rates_and_history(
    factory: Factory, runtime: Runtime
) -> None:
    responder = factory.user(Role.responder)
    viewer = factory.user(Role.viewer)
    factory.service("checkout")
    events_slo(responder, "checkout-availability", "checkout", description="Checkout works.")
    empty = viewer.get("/slos/checkout-availability")
    assert empty.status_code == 200
    assert "No evaluation with events yet" in empty.text
    with FrozenClock(T0) as clock:
        for bad in (0, 2, 4):
            push(responder, "checkout-availability", 1000, bad)
            evaluate_all(runtime)
            clock.advance(minutes=10)
        listing = viewer.get("/slos")
        page = viewer.get("/slos/checkout-availability")
        sla = viewer.get("/sla", params={"month": "2026-11"})
    assert listing.status_code == 200
    row = re.search(r'<tr data-slo="checkout-availability">.*?</tr>', listing.text, re.S)
    assert row is not None
    assert "99.9% over 30d" in row.group(0)
    assert "slo-state-ticket" in row.group(0)
    assert page.status_code == 200
    polyline = re.search(r'<polyline class="budget" points="([^"]+)"', page.text)
    assert polyline is not None
    assert len(polyline.group(1).split()) == 3  # one point per evaluation with events
    assert "Checkout works." in page.text
    assert page.text.count('class="slo-state slo-state-') >= 4  # head + three evaluations
    assert viewer.get("/slos/nothing").status_code == 404
    assert sla.status_code == 200
    assert "No SLA targets yet" in sla.text


def test_the_budget_chart_scales_into_its_box() -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    history = [(start + timedelta(hours=h), value) for h, value in enumerate([1.0, 0.5, -0.5])]
    chart = budget_chart(history)
    points = [tuple(map(float, p.split(","))) for p in chart.points.split()]
    assert points[0][0] == chart.left
    assert points[-1][0] == chart.right
    ys = [y for _, y in points]
    assert ys[0] < ys[1] < ys[2]  # less budget is lower on the chart
    assert ys[2] == pytest.approx(chart.height - 28, abs=0.1)  # the lowest value touches the bottom
    assert [g.label for g in chart.gridlines] == ["100%", "50%", "0%", "-50%"]
    assert chart.zero_y == pytest.approx(ys[1] + (ys[2] - ys[1]) / 2, abs=0.1)
    assert budget_chart([]).points == ""


@pytest.mark.parametrize(
    ("lowest", "label"),
    [
        (-99_999.0, "-9999900%"),  # a 99.999 % target with every event bad
        (-12_345.678_91, "-1234567.89%"),
        (-0.001_234_5, "-0.12%"),
    ],
)
def test_the_budget_chart_labels_an_overspent_bottom_in_plain_digits(
    lowest: float, label: str
) -> None:
    """The lowest gridline is wherever the budget went, any number: ``%g`` kept six
    significant digits and wrote large ones with an exponent ("-1e+07%"). It reads as the
    page's budget figures do, to two decimals."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    history = [(start, 1.0), (start + timedelta(hours=1), lowest)]
    assert [g.label for g in budget_chart(history).gridlines] == ["100%", "50%", "0%", label]


def test_the_budget_chart_draws_no_second_zero_for_a_bottom_that_rounds_to_it() -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    history = [(start, 1.0), (start + timedelta(hours=1), -0.000_000_1)]
    assert [g.label for g in budget_chart(history).gridlines] == ["100%", "50%", "0%"]


def _unreadable_prometheus_slo(responder: ApiUser, name: str, service: str) -> int:
    """An SLO whose Prometheus listens nowhere; returns the port it would be on."""
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    answer = responder.post(
        "/api/v1/slos",
        json={
            "name": name,
            "service": service,
            "objective_percent": 99,
            "sli": {
                "kind": "prometheus",
                "url": f"http://127.0.0.1:{port}",
                "good_query": "sum(rate(ok[{{window}}]))",
                "total_query": "sum(rate(all[{{window}}]))",
            },
        },
    )
    assert answer.status_code == 201, answer.text
    return port


def test_slo_status_says_when_the_sli_is_unreadable(
    server_url: str, factory: Factory, runtime: Runtime
) -> None:
    responder = factory.user(Role.responder)
    factory.service("payments")
    cli = {"url": server_url, "token": responder.token}
    _unreadable_prometheus_slo(responder, "payments-prom", "payments")
    with FrozenClock(T0):
        evaluate_all(runtime)
    listed = run_cli(["slo", "status"], **cli)
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.stdout.splitlines() if "payments-prom" in line)
    # never read: nothing is known, and the list says why
    assert "pending · SLI unreadable" in row, listed.stdout
    one = run_cli(["slo", "status", "payments-prom"], **cli)
    assert one.stdout.splitlines()[0] == "payments-prom (payments): pending · SLI unreadable"


def test_slo_report_shows_why_a_source_is_unreadable(
    server_url: str, factory: Factory, runtime: Runtime
) -> None:
    responder = factory.user(Role.responder)
    factory.service("payments")
    cli = {"url": server_url, "token": responder.token}
    port = _unreadable_prometheus_slo(responder, "payments-prom", "payments")
    target = {"service": "payments", "kind": "uptime", "target_percent": 99.5}
    responder.put("/api/v1/sla/targets", json={**target, "slo": "payments-prom"})
    with FrozenClock(T0):
        report = run_cli(["slo", "report", "2026-11"], **cli)
    assert report.exit_code == 0, report.output
    line = next(line for line in report.stdout.splitlines() if "payments-prom" in line)
    assert "unreadable" in line and "no" in line
    assert (
        "unreadable: payments uptime 99.5% (slo:payments-prom): "
        f"cannot reach Prometheus at http://127.0.0.1:{port}"
    ) in " ".join(report.stdout.split())


def test_the_sla_report_never_shows_a_breach_as_its_target(
    server_url: str, factory: Factory
) -> None:
    """998,996 good of a million is 99.8996 %, a breach of 99.9 that three decimals rounded
    to 99.900; 999,995 of a million meets a 99.9995 target that they rounded to 99.999.
    The console and `firetower slo report` round each towards its own side."""
    responder = factory.user(Role.responder)
    viewer = factory.user(Role.viewer)
    cases = {  # service: (good of a million, target, achieved shown, breached)
        "checkout": (998_996, 99.9, "99.899%", "yes"),
        "search": (999_995, 99.9995, "100.000%", "no"),
    }
    with FrozenClock(T0):
        for service, (good, target, _, _) in cases.items():
            factory.service(service)
            events_slo(responder, f"{service}-availability", service)
            push(responder, f"{service}-availability", good, 1_000_000 - good)
            answer = responder.put(
                "/api/v1/sla/targets",
                json={
                    "service": service,
                    "kind": "uptime",
                    "target_percent": target,
                    "slo": f"{service}-availability",
                },
            )
            assert answer.status_code == 200, answer.text
        report = run_cli(["slo", "report", "2026-11"], url=server_url, token=responder.token)
        page = viewer.get("/sla", params={"month": "2026-11"})
    assert report.exit_code == 0, report.output
    assert page.status_code == 200
    for service, (_, _, achieved, breached) in cases.items():
        line = next(line for line in report.stdout.splitlines() if f"slo:{service}" in line)
        cells = [cell for cell in re.split(r"\s*│\s*|\s{2,}", line.strip()) if cell]
        assert cells[3:5] == [achieved, breached], line
        row = re.search(rf'<tr data-service="{service}">.*?</tr>', page.text, re.S)
        assert row is not None
        cells = re.findall(r"<td>(.*?)</td>", row.group(0), re.S)
        assert cells[3] == achieved, cells
        assert ("yes" in cells[4]) == (breached == "yes"), cells


def test_slo_import_without_a_prometheus_url_names_the_flag(
    server_url: str, factory: Factory, tmp_path: Path
) -> None:
    responder = factory.user(Role.responder)
    factory.service("payments")
    sloth = tmp_path / "payments.sloth.yaml"
    sloth.write_text(SLOTH)
    no_url = run_cli(["slo", "import", str(sloth)], url=server_url, token=responder.token)
    assert error_line(no_url) == (
        "error: the file does not say where Prometheus is: give --prometheus-url URL "
        "(or set the server's prometheus_url)"
    )


def test_slo_import_with_a_bad_prometheus_url_says_what_is_wrong_with_it(
    server_url: str, factory: Factory, runtime: Runtime, tmp_path: Path
) -> None:
    """A URL given with the flag but refused by the server was reported as no URL given
    ("the file does not say where Prometheus is: give --prometheus-url"), which sends one
    to give the flag one has just given."""
    responder = factory.user(Role.responder)
    factory.service("payments")
    sloth = tmp_path / "payments.sloth.yaml"
    sloth.write_text(SLOTH)
    refused = run_cli(
        ["slo", "import", str(sloth), "--prometheus-url", "prometheus:9090"],
        url=server_url,
        token=responder.token,
    )
    assert refused.exit_code == 1
    assert error_line(refused) == (
        "error: --prometheus-url: 'prometheus:9090' must be an http:// or https:// URL"
    )
    assert responder.get("/api/v1/slos").json() == []


def test_the_slo_page_does_not_call_an_unreadable_sli_quiet(
    factory: Factory, runtime: Runtime
) -> None:
    """The budget line said "No events in the window yet." under the unreadable-SLI banner:
    at night that reads as no traffic, when nothing is known at all."""
    responder = factory.user(Role.responder)
    factory.service("payments")
    _unreadable_prometheus_slo(responder, "payments-prom", "payments")
    with FrozenClock(T0):
        evaluate_all(runtime)
        page = responder.get("/slos/payments-prom")
    assert page.status_code == 200
    assert "The SLI could not be read at the last evaluation" in page.text
    assert "No events in the window yet" not in page.text
    assert "Budget unknown: the last evaluation could not read the SLI." in page.text


def test_targets_of_many_digits_are_shown_as_written(
    server_url: str, factory: Factory, runtime: Runtime
) -> None:
    """``%g`` kept six significant digits: a 99.99995 % SLA target read "100%" beside its
    breach, and a 99.99985 % objective "99.9999%", on the console, in the CLI and in the
    page's alert."""
    responder = factory.user(Role.responder)
    viewer = factory.user(Role.viewer)
    factory.service("checkout")
    cli = {"url": server_url, "token": responder.token}
    events_slo(responder, "checkout-availability", "checkout", objective_percent=99.99985)
    target = {
        "service": "checkout",
        "kind": "uptime",
        "target_percent": 99.99995,
        "slo": "checkout-availability",
    }
    assert responder.put("/api/v1/sla/targets", json=target).status_code == 200
    with FrozenClock(T0):
        push(responder, "checkout-availability", 999_990, 10)  # 99.999 %: a 6.7x burn
        evaluate_all(runtime)
        listed = run_cli(["slo", "status"], **cli)
        one = run_cli(["slo", "status", "checkout-availability"], **cli)
        report = run_cli(["slo", "report", "2026-11"], **cli)
        listing = viewer.get("/slos")
        page = viewer.get("/slos/checkout-availability")
        sla = viewer.get("/sla", params={"month": "2026-11"})
    row = next(line for line in listed.stdout.splitlines() if "checkout-availability" in line)
    assert "99.99985% / 30d" in row, row
    assert "objective 99.99985% over 30d" in one.stdout, one.stdout
    line = next(line for line in report.stdout.splitlines() if "slo:checkout" in line)
    cells = [cell for cell in re.split(r"\s*│\s*|\s{2,}", line.strip()) if cell]
    assert cells[1] == "uptime 99.99995%", line
    assert cells[3:5] == ["99.999%", "yes"], line
    slo_row = re.search(r'<tr data-slo="checkout-availability">.*?</tr>', listing.text, re.S)
    assert slo_row is not None and "99.99985% over 30d" in slo_row.group(0)
    assert "objective <strong>99.99985%</strong>" in page.text
    sla_row = re.search(r'<tr data-service="checkout">.*?</tr>', sla.text, re.S)
    assert sla_row is not None
    assert re.findall(r"<td>(.*?)</td>", sla_row.group(0), re.S)[1] == "uptime 99.99995%"
    alert = slo_alerts(runtime, "checkout-availability")["page"]
    assert "objective 99.99985% over 30d" in alert.title, alert.title
