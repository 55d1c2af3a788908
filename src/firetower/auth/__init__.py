"""Users, teams, roles, API tokens and web login."""
