// Allocates N MiB (argv[1]) with malloc, touches every page and prints a
// checksum. A guest over its memory limit sees malloc return NULL.
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    int mib = argc > 1 ? atoi(argv[1]) : 1;
    size_t n = (size_t)mib << 20;
    volatile unsigned char *p = malloc(n);
    if (!p) { printf("malloc(%d MiB) failed\n", mib); return 10; }
    unsigned sum = 0;
    for (size_t i = 0; i < n; i += 4096) { p[i] = (unsigned char)i; sum += p[i]; }
    printf("malloc(%d MiB) ok, checksum %u\n", mib, sum);
    return 0;
}
