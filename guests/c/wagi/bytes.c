// A WAGI function with a large answer: QUERY_STRING is `N` or `N&trap`.
// Writes N bytes of body (byte i is i % 251, so a client can check every
// byte) in 64 KiB writes, then traps if asked to: a guest that fails after
// its response has started streaming.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned char pattern[65536 + 251];

int main(void) {
    const char *q = getenv("QUERY_STRING");
    long long n = q ? atoll(q) : 0;
    int trap = q && strstr(q, "&trap") != NULL;
    const char *head = "Content-Type: application/octet-stream\n\n";
    write(1, head, strlen(head));
    for (size_t i = 0; i < sizeof pattern; i++) pattern[i] = (unsigned char)(i % 251);
    long long off = 0;
    while (off < n) {
        size_t len = n - off < 65536 ? (size_t)(n - off) : 65536;
        ssize_t w = write(1, pattern + off % 251, len);
        if (w <= 0) return 3;
        off += w;
    }
    if (trap) __builtin_trap();
    return 0;
}
