"""The firetower command line: server commands and API client commands."""
