"""The web console: Jinja2 templates, HTMX, vendored static assets."""
