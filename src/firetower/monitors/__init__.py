"""Monitors: synthetic probes, SLOs with burn-rate alerting, SLA reports.

A failing probe or a page-level SLO burn becomes a signal (through ``firetower.signals``),
so routing rules, silences and maintenance windows apply to it like to any alert.
"""
