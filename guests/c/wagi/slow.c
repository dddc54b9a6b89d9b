// A WAGI function that takes its time: QUERY_STRING is `NAME` or `NAME&MS`.
// If a directory is preopened at /signal it first creates /signal/NAME, so
// a test can tell that the request has started; then it sleeps MS
// milliseconds (default 1000) and answers `done NAME`.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(void) {
    const char *q = getenv("QUERY_STRING");
    char name[128] = "x";
    long ms = 1000;
    if (q && *q) {
        snprintf(name, sizeof name, "%s", q);
        char *amp = strchr(name, '&');
        if (amp) { *amp = 0; ms = atol(amp + 1); }
    }
    char path[200];
    snprintf(path, sizeof path, "/signal/%s", name);
    FILE *f = fopen(path, "w");
    if (f) fclose(f);
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
    printf("Content-Type: text/plain\n\ndone %s\n", name);
    return 0;
}
