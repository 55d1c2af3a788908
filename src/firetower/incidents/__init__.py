"""Incidents: lifecycle, severity policy, roles, tasks and the append-only timeline."""
