"""Text patterns shared by every input schema.

PostgreSQL cannot store NUL in text, so no text field accepts it (SQLite would, and the two
backends must answer alike).
"""

NO_NUL = r"^[^\x00]*$"
