"""firetower: self-hosted incident management, from the first signal to the last lesson."""

__version__ = "0.1.0"
