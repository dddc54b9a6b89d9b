// The seed's image pipeline as a WAGI function: a binary PPM (P6) image in,
// a grayscale thumbnail a quarter of its width and height out, as a binary
// PGM (P5). The input's comment line (the benchmark's sequence number and
// send time) is copied to the output. Box filter over 4x4 pixels; luma with
// the Rec. 601 weights.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BYTES (8 << 20)

static unsigned char *in;
static size_t len, pos;

static void fail(const char *why) {
    printf("Status: 400 Bad Request\nContent-Type: text/plain\n\n%s\n", why);
    exit(0);
}

// Skips whitespace and copies a `#` comment line into `comment`.
static void skip(char *comment, size_t cap) {
    for (;;) {
        while (pos < len && (in[pos] == ' ' || in[pos] == '\n' || in[pos] == '\r' || in[pos] == '\t')) pos++;
        if (pos < len && in[pos] == '#') {
            size_t start = pos;
            while (pos < len && in[pos] != '\n') pos++;
            size_t n = pos - start < cap - 1 ? pos - start : cap - 1;
            memcpy(comment, in + start, n);
            comment[n] = 0;
            continue;
        }
        return;
    }
}

static long number(char *comment, size_t cap) {
    skip(comment, cap);
    long v = 0;
    int digits = 0;
    while (pos < len && in[pos] >= '0' && in[pos] <= '9' && digits < 9) {
        v = v * 10 + (in[pos++] - '0');
        digits++;
    }
    if (!digits) fail("expected a number in the PPM header");
    return v;
}

int main(void) {
    in = malloc(MAX_BYTES);
    if (!in) fail("out of memory");
    size_t n;
    while ((n = fread(in + len, 1, MAX_BYTES - len, stdin)) > 0) len += n;
    if (len < 2 || in[0] != 'P' || in[1] != '6') fail("expected a binary PPM (P6)");
    pos = 2;
    char comment[256] = "";
    long w = number(comment, sizeof comment), h = number(comment, sizeof comment);
    long max = number(comment, sizeof comment);
    pos++;  // the single whitespace before the pixels
    if (w < 4 || h < 4 || w > 8192 || h > 8192 || max != 255) fail("unsupported PPM size or depth");
    if (len - pos < (size_t)(w * h * 3)) fail("the PPM is shorter than its header says");
    const unsigned char *px = in + pos;
    long tw = w / 4, th = h / 4;
    unsigned char *out = malloc((size_t)(tw * th));
    if (!out) fail("out of memory");
    for (long y = 0; y < th; y++) {
        for (long x = 0; x < tw; x++) {
            unsigned sum = 0;
            for (int dy = 0; dy < 4; dy++) {
                const unsigned char *row = px + ((y * 4 + dy) * w + x * 4) * 3;
                for (int dx = 0; dx < 4; dx++) {
                    const unsigned char *p = row + dx * 3;
                    sum += (299u * p[0] + 587u * p[1] + 114u * p[2]) / 1000u;
                }
            }
            out[y * tw + x] = (unsigned char)(sum / 16);
        }
    }
    printf("Content-Type: image/x-portable-graymap\n\n");
    printf("P5\n%s\n%ld %ld\n255\n", comment[0] ? comment : "#", tw, th);
    fwrite(out, 1, (size_t)(tw * th), stdout);
    return 0;
}
