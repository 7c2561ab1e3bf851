"""Generated docs: docs/reference.md and docs/quirks.md, written from the code so they cannot go stale."""
