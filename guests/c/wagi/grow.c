// A WAGI function whose memory use is its input: QUERY_STRING is the number
// of KiB to allocate and touch. A test raises it request after request to
// look like a leak.
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    const char *q = getenv("QUERY_STRING");
    size_t kib = q ? (size_t)atol(q) : 0;
    volatile unsigned char *p = malloc(kib * 1024 + 1);
    if (!p) { printf("Status: 500\nContent-Type: text/plain\n\nout of memory\n"); return 0; }
    for (size_t i = 0; i < kib * 1024; i += 4096) p[i] = 1;
    printf("Content-Type: text/plain\n\nheld %zu KiB\n", kib);
    return 0;
}
