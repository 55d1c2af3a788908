"""Tables of SLOs, their pushed events and SLA targets."""

from __future__ import annotations
