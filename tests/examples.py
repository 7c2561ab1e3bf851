"""Example counts of the costly property tests: each example of the large-body tests builds,
parses, serialises and writes bodies through two paths, and the default suite must stay under ten
minutes. The default run draws the counts the tests give (derandomized: the same examples every
run); WORKERS_AI_PROPERTY_EXAMPLES=N draws N for every one of them (the thorough run: 300)."""

from __future__ import annotations

import os


def property_examples(default: int) -> int:
    """`default`, or the count WORKERS_AI_PROPERTY_EXAMPLES sets."""
    return int(os.environ.get("WORKERS_AI_PROPERTY_EXAMPLES", default))
