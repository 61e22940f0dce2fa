/* stats: read numbers from the command line, print mean, median and range. */
#include "stats.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    size_t n = (size_t)(argc - 1);
    double *values = calloc(n ? n : 1, sizeof *values);
    if (!values)
        return 1;
    for (size_t i = 0; i < n; i++)
        values[i] = strtod(argv[i + 1], NULL);
    printf("n=%zu mean=%g median=%g range=%g\n", n, stats_mean(values, n),
           stats_median(values, n), stats_range(values, n));
    free(values);
    return 0;
}
