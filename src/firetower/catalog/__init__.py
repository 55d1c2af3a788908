"""Services, their dependencies, user-facing features, customers and blast radius."""
