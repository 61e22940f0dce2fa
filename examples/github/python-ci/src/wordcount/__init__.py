"""Counts words in text."""


def count(text: str) -> dict:
    counts: dict = {}
    for word in text.lower().split():
        counts[word] = counts.get(word, 0) + 1
    return counts
