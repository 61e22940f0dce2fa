import sys
import unittest

sys.path.insert(0, "src")

from wordcount import count  # noqa: E402


class CountTest(unittest.TestCase):
    def test_counts_case_insensitively(self):
        self.assertEqual(count("a A b"), {"a": 2, "b": 1})

    def test_empty(self):
        self.assertEqual(count(""), {})


if __name__ == "__main__":
    unittest.main()
