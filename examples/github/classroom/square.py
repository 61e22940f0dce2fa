"""Reads a number on stdin and prints its square."""

import sys


def square(n: int) -> int:
    return n * n


if __name__ == "__main__":
    print(square(int(sys.stdin.readline())))
