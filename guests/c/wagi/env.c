// A WAGI function that reports what it was given: its arguments, its whole
// environment and its request body, as text/plain.
#include <stdio.h>

extern char **environ;

int main(int argc, char **argv) {
    printf("Content-Type: text/plain\n");
    printf("X-Guest: env\n\n");
    for (int i = 0; i < argc; i++) printf("argv[%d]=%s\n", i, argv[i]);
    for (char **e = environ; *e; e++) printf("env %s\n", *e);
    printf("body=");
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) fwrite(buf, 1, n, stdout);
    printf("\n");
    return 0;
}
