// Prints a greeting, its arguments and its whole environment.
#include <stdio.h>

extern char **environ;

int main(int argc, char **argv) {
    printf("hello from C\n");
    for (int i = 1; i < argc; i++) printf("arg[%d]=%s\n", i, argv[i]);
    for (char **e = environ; *e; e++) printf("env %s\n", *e);
    return argc > 1 && argv[1][0] == 'x' ? 3 : 0;
}
