"""What the wrk benchmarks share: running wrk with a Lua script and reading its figures.

wrk (Debian's package `wrk`) is a load generator written in C; its LuaJIT scripts make each
request. ``LUA_FINGERPRINT`` gives them the fingerprints the Python generators put in
(``intake_support.fingerprint``), so both kinds of generator send the same alerts.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.intake_support import FINGERPRINT_MULTIPLIER, FINGERPRINTS_PER_BODY

LUA_FINGERPRINT = f"""
local function fingerprint(n, place)
  return bit.tohex((0ULL + n * {FINGERPRINTS_PER_BODY} + place) * {FINGERPRINT_MULTIPLIER}ULL)
end
"""
"""A Lua function computing ``intake_support.fingerprint(n, place)`` with LuaJIT's unsigned
64-bit integers (which wrap as the Python function's modulo does)."""


WRK_DURATION_UNITS_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
"""wrk prints a run's duration in the largest unit that fits: ``10.01s``, ``1.67m``."""


@dataclass
class WrkResult:
    requests: int
    seconds: float
    non_2xx: int
    latency: str

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def accepted(self) -> int:
        return self.requests - self.non_2xx

    def verdict(self, counted: float, per_request: int, connections: int) -> str:
        """Whether the server took in (``counted``) what wrk saw accepted, each request
        carrying ``per_request`` items. wrk stops at its deadline without waiting for the
        requests in flight; the server still takes them, so up to one request per connection
        may be counted but not accepted."""
        low, high = self.accepted * per_request, (self.accepted + connections) * per_request
        return "OK" if low <= counted <= high else "MISMATCH"


def run_wrk(url: str, script: str, seconds: float, connections: int) -> WrkResult:
    """wrk with one thread and ``connections`` connections, running the Lua ``script``."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(script)
    try:
        finished = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", file.name, url],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        Path(file.name).unlink()
    if finished.stderr.strip():  # a script that does not load: wrk runs on with plain GETs
        raise RuntimeError(f"wrk failed:\n{finished.stderr}")
    return parse_wrk_output(finished.stdout)


def parse_wrk_output(out: str) -> WrkResult:
    """The figures of wrk's report."""
    done = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m|h)\b", out)
    if done is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    seconds_taken = float(done.group(2)) * WRK_DURATION_UNITS_SECONDS[done.group(3)]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    latency = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    return WrkResult(
        requests=int(done.group(1)),
        seconds=seconds_taken,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        latency=f"mean {latency.group(1)}, max {latency.group(3)}" if latency else "?",
    )
