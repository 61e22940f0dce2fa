/* Unit tests for libstats: each CHECK prints one line; any failure exits 1. */
#include "stats.h"

#include <math.h>
#include <stdio.h>

static int failures;

#define CHECK(name, got, want)                                                \
    do {                                                                      \
        double g = (got), w = (want);                                         \
        int ok = fabs(g - w) < 1e-9;                                          \
        printf("%s %s (got %g, want %g)\n", ok ? "ok  " : "FAIL", name, g, w); \
        failures += !ok;                                                      \
    } while (0)

int main(void)
{
    const double odd[] = {3, 1, 2};
    const double even[] = {4, 1, 3, 2};
    const double one[] = {7};

    CHECK("mean of odd sample", stats_mean(odd, 3), 2.0);
    CHECK("median of odd sample", stats_median(odd, 3), 2.0);
    CHECK("median of even sample", stats_median(even, 4), 2.5);
    CHECK("range of even sample", stats_range(even, 4), 3.0);
    CHECK("single value", stats_median(one, 1), 7.0);
    CHECK("empty sample", stats_mean(NULL, 0), 0.0);

    printf("%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
