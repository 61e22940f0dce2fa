/* stats.h - a tiny statistics library: mean, median and range of a sample. */
#ifndef STATS_H
#define STATS_H

#include <stddef.h>

/* Arithmetic mean of n values; 0.0 when n is 0. */
double stats_mean(const double *values, size_t n);

/* Median of n values (the input is not modified); 0.0 when n is 0. */
double stats_median(const double *values, size_t n);

/* Largest minus smallest value; 0.0 when n is 0. */
double stats_range(const double *values, size_t n);

#endif
