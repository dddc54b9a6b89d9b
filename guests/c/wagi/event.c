// A WAGI event function for the trigger tests. It answers with a JSON
// record of the CloudEvent it was given (id, source, type, subject and the
// payload), so a test can match every reply to the message it came from.
// EVENT_FAIL in its environment picks a failure:
//   "400"     always answers 400 (a permanent failure: dead-letter at once);
//   "random"  answers 500 to about one call in ten (retry may help);
//   "trap"    traps (an unreachable instruction) on every call.
// EVENT_SLEEP_MS makes every call take that long first.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// Writes `s` as the inside of a JSON string.
static void json(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
}

static const char *env(const char *name) {
    const char *v = getenv(name);
    return v ? v : "";
}

int main(void) {
    const char *nap = env("EVENT_SLEEP_MS");
    if (*nap) usleep((useconds_t)atoi(nap) * 1000);
    const char *fail = env("EVENT_FAIL");
    if (strcmp(fail, "trap") == 0) __builtin_trap();
    if (strcmp(fail, "400") == 0) {
        printf("Status: 400 Bad Request\nContent-Type: text/plain\n\nrejected\n");
        return 0;
    }
    if (strcmp(fail, "random") == 0 && arc4random_uniform(10) == 0) {
        printf("Status: 500 Internal Server Error\nContent-Type: text/plain\n\nunlucky\n");
        return 0;
    }
    static char body[65536];
    size_t n = fread(body, 1, sizeof body - 1, stdin);
    body[n] = 0;
    printf("Content-Type: application/json\nce-type: dev.wedge.test.result\n\n");
    const char *keys[] = {"id", "source", "type", "subject"};
    const char *vars[] = {"HTTP_CE_ID", "HTTP_CE_SOURCE", "HTTP_CE_TYPE", "HTTP_CE_SUBJECT"};
    putchar('{');
    for (int i = 0; i < 4; i++) {
        printf("\"%s\":\"", keys[i]);
        json(env(vars[i]), strlen(env(vars[i])));
        printf("\",");
    }
    printf("\"payload\":\"");
    json(body, n);
    printf("\"}\n");
    return 0;
}
