// Exercises preopened directories: `files read PATH` prints a file;
// `files write PATH TEXT` writes one. Exit 0 on success, 1 with the error on stderr.
#include <errno.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "read") == 0) {
        FILE *f = fopen(argv[2], "r");
        if (!f) { fprintf(stderr, "open %s: %s\n", argv[2], strerror(errno)); return 1; }
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, n, stdout);
        fclose(f);
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "write") == 0) {
        FILE *f = fopen(argv[2], "w");
        if (!f) { fprintf(stderr, "open %s: %s\n", argv[2], strerror(errno)); return 1; }
        fputs(argv[3], f);
        return fclose(f) == 0 ? 0 : 1;
    }
    fprintf(stderr, "usage: files read PATH | files write PATH TEXT\n");
    return 2;
}
