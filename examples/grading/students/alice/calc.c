/* A student's calculator: `calc add|sub|mul|div A B`, `calc sum` (numbers on stdin),
 * `calc version`. Alice's version: every
 * operation right. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int usage(void) {
    fprintf(stderr, "usage: calc add|sub|mul|div A B | calc sum | calc version\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage();
    const char *op = argv[1];
    if (strcmp(op, "version") == 0) {
        printf("calc 1.0\n");
        return 0;
    }
    if (strcmp(op, "sum") == 0) {
        long total = 0, x;
        while (scanf("%ld", &x) == 1) total += x;
        printf("%ld\n", total);
        return 0;
    }
    if (argc != 4) return usage();
    long a = atol(argv[2]), b = atol(argv[3]);
    if (strcmp(op, "add") == 0) {
        printf("%ld\n", a + b);
    } else if (strcmp(op, "sub") == 0) {
        printf("%ld\n", a - b);
    } else if (strcmp(op, "mul") == 0) {
        printf("%ld\n", a * b);
    } else if (strcmp(op, "div") == 0) {
        if (b == 0) {
            fprintf(stderr, "division by zero\n");
            return 1;
        }
        printf("%g\n", (double)a / (double)b);
    } else {
        return usage();
    }
    return 0;
}
