"""Problem details name the offending field by its full place in the input."""

from __future__ import annotations

import pytest

from firetower.app import _field_of


@pytest.mark.parametrize(
    ("loc", "field"),
    [
        (("body", "services", 2), "services.2"),
        (("body", 17), "body"),  # a JSON syntax error at character 17
        (("query", "limit"), "limit"),
        (("path", "ref"), "ref"),
        # A body field named like an input location keeps its name.
        (("body", "http", "conditions", 0, "jsonpath", "path"), "http.conditions.0.jsonpath.path"),
        (("body", "query"), "query"),
    ],
)
def test_field_names_keep_every_part_of_the_place(loc: tuple[object, ...], field: str) -> None:
    assert _field_of(loc) == field
