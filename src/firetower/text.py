"""Text patterns shared by every input schema.

PostgreSQL cannot store NUL in text, so no text field accepts it (SQLite would, and the two
backends must answer alike).
"""

NO_NUL = r"^[^\x00]*$"
VISIBLE = r"^[^\x00]*[^\s\x00-\x1f\x7f][^\x00]*$"
"""A line: one visible character at least ("   " is no title), and no NUL. Control
characters are not visible either: Python's ``strip`` removes some (``\\x1c``) that the
pattern's ``\\s`` keeps, which would leave a title empty once stripped."""


def pattern_message(pattern: str, value: object) -> str | None:
    """What is wrong with ``value`` in words, when it fails one of these patterns (pydantic
    would quote the regex); None for other patterns."""
    if pattern not in (NO_NUL, VISIBLE) or not isinstance(value, str):
        return None
    if "\x00" in value:
        return "must not contain the NUL character (\\u0000)"
    return "must not be blank" if pattern == VISIBLE else None
