"""Seeded generators shared by the task fakes: seeds, text, vectors, images, audio."""
