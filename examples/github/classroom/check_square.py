"""The tests the command grader runs: exit 0 when square() is right."""

from square import square

assert square(3) == 9
assert square(-4) == 16
print("all good")
