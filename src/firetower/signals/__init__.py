"""Signals: alert intake adapters (Alertmanager, PagerDuty Events v2), dedup and routing."""
