"""The benchmarks read wrk's report right, whatever unit it gives the run's duration in."""

from __future__ import annotations

import pytest
from bench.wrk_support import parse_wrk_output

REPORT = """Running 2m test @ http://127.0.0.1:49811/ingest/alertmanager/key
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   149.65ms   70.83ms 546.84ms   77.06%
    Req/Sec   116.81     51.16   270.00     69.08%
  10886 requests in {duration}, 2.26MB read
{refused}Requests/sec:    108.83
Transfer/sec:     23.17KB
"""


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [("850.20ms", 0.8502), ("10.01s", 10.01), ("1.67m", 100.2), ("1.01h", 3636.0)],
)
def test_the_duration_is_read_in_each_unit_wrk_prints(duration: str, seconds: float) -> None:
    result = parse_wrk_output(REPORT.format(duration=duration, refused=""))
    assert result.requests == 10886
    assert result.seconds == pytest.approx(seconds)
    assert result.non_2xx == 0
    assert result.latency == "mean 149.65ms, max 546.84ms"


def test_refused_requests_are_not_counted_as_accepted() -> None:
    report = REPORT.format(duration="10.01s", refused="  Non-2xx or 3xx responses: 12\n")
    assert parse_wrk_output(report).accepted == 10886 - 12


def test_a_report_without_the_count_is_an_error_that_shows_it() -> None:
    with pytest.raises(RuntimeError, match="unexpected wrk output:\nwrk: connection refused"):
        parse_wrk_output("wrk: connection refused\n")
