"""Text patterns shared by every input schema, and the words messages are made of.

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


_SPOKEN_AS_VOWEL = frozenset({"http", "https"})
"""Names read letter by letter whose first letter is said with a vowel ("aitch")."""


def with_article(word: str) -> str:
    """``word`` with its indefinite article, for the names messages give (kinds of probe and
    integration): "an alertmanager", "an http", "a tcp", "a grafana". A vowel letter takes
    "an", as do the initialisms said from a vowel sound (``_SPOKEN_AS_VOWEL``)."""
    vowel = word[:1].lower() in ("a", "e", "i", "o", "u") or word.lower() in _SPOKEN_AS_VOWEL
    return f"{'an' if vowel else 'a'} {word}"
