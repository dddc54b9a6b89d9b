// The C wasi:http contender of the wedge benchmarks (bench/WORKLOADS.md): a
// wasi:http/proxy 0.2 component that `wedge serve` and `wasmtime serve` both
// run unchanged.
//   GET /hello -> 200 text/plain "Hello, wedge\n"
//   GET /jwt   -> 200 "ok <sub>\n" for a valid HS256 bearer token, else 401
//                 "invalid token\n" (own SHA-256, HMAC and base64url below)
//   other methods on those paths -> 405; any other path -> 404.
// Build: ./build.sh (bindings from `wit-bindgen c` in a temporary build dir,
// clang-16 --target=wasm32-wasi as a reactor, then `wasm-tools component new`
// with the pinned Wasmtime 48 proxy adapter) -> bench.component.wasm.
#include <stdlib.h>
#include <string.h>
#include "proxy.h"

static const char SECRET[] = "wedge-bench-secret";

// ---- responses ----

static void add_header(wasi_http_types_own_fields_t h, const char *name, const char *v, size_t n) {
    wasi_http_types_field_name_t key = { (uint8_t *)name, strlen(name) };
    wasi_http_types_field_value_t value = { (uint8_t *)v, n };
    wasi_http_types_header_error_t err;
    wasi_http_types_method_fields_append(wasi_http_types_borrow_fields(h), &key, &value, &err);
}

// Sends the whole response: status, content-type, content-length, one body write.
static void respond(wasi_http_types_own_response_outparam_t out, uint16_t status,
                    const char *extra_name, const char *extra_value,
                    const char *body, size_t len) {
    char clen[24];
    size_t cn = 0;
    char digits[24];
    size_t v = len, nd = 0;
    do { digits[nd++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (nd) clen[cn++] = digits[--nd];

    wasi_http_types_own_fields_t headers = wasi_http_types_constructor_fields();
    add_header(headers, "content-type", "text/plain", 10);
    add_header(headers, "content-length", clen, cn);
    if (extra_name) add_header(headers, extra_name, extra_value, strlen(extra_value));
    wasi_http_types_own_outgoing_response_t resp = wasi_http_types_constructor_outgoing_response(headers);
    wasi_http_types_borrow_outgoing_response_t r = wasi_http_types_borrow_outgoing_response(resp);
    wasi_http_types_method_outgoing_response_set_status_code(r, status);
    wasi_http_types_own_outgoing_body_t body_res;
    if (!wasi_http_types_method_outgoing_response_body(r, &body_res)) abort();
    wasi_http_types_result_own_outgoing_response_error_code_t result = { .is_err = false, .val = { .ok = resp } };
    wasi_http_types_static_response_outparam_set(out, &result);

    wasi_http_types_own_output_stream_t stream;
    if (!wasi_http_types_method_outgoing_body_write(wasi_http_types_borrow_outgoing_body(body_res), &stream)) abort();
    // Bodies here are far below the 4096 bytes one blocking write may carry.
    proxy_list_u8_t chunk = { (uint8_t *)body, len };
    wasi_io_streams_stream_error_t serr;
    wasi_io_streams_method_output_stream_blocking_write_and_flush(
        wasi_io_streams_borrow_output_stream(stream), &chunk, &serr);
    wasi_io_streams_output_stream_drop_own(stream);
    wasi_http_types_error_code_t ferr;
    wasi_http_types_static_outgoing_body_finish(body_res, NULL, &ferr);
}

static void respond_text(wasi_http_types_own_response_outparam_t out, uint16_t status, const char *text) {
    respond(out, status, NULL, NULL, text, strlen(text));
}

// ---- SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104) ----

typedef struct { uint32_t h[8]; uint8_t buf[64]; size_t used; uint64_t total; } sha256_t;

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = hh + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

static void sha256_init(sha256_t *s) {
    static const uint32_t iv[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
    memcpy(s->h, iv, sizeof iv);
    s->used = 0;
    s->total = 0;
}

static void sha256_update(sha256_t *s, const uint8_t *p, size_t n) {
    s->total += n;
    if (s->used) {
        size_t take = 64 - s->used < n ? 64 - s->used : n;
        memcpy(s->buf + s->used, p, take);
        s->used += take; p += take; n -= take;
        if (s->used < 64) return;
        sha256_block(s->h, s->buf);
        s->used = 0;
    }
    for (; n >= 64; p += 64, n -= 64) sha256_block(s->h, p);
    memcpy(s->buf, p, n);
    s->used = n;
}

static void sha256_final(sha256_t *s, uint8_t out[32]) {
    uint64_t bits = s->total * 8;
    uint8_t pad[72] = { 0x80 };
    size_t padlen = (s->used < 56 ? 56 : 120) - s->used;
    for (int i = 0; i < 8; i++) pad[padlen + i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_update(s, pad, padlen + 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24); out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8); out[4 * i + 3] = (uint8_t)s->h[i];
    }
}

static void hmac_sha256(const uint8_t *key, size_t klen, const uint8_t *msg, size_t mlen, uint8_t out[32]) {
    uint8_t k[64] = { 0 }, pad[64], inner[32];
    sha256_t s;
    if (klen > 64) { sha256_init(&s); sha256_update(&s, key, klen); sha256_final(&s, k); }
    else memcpy(k, key, klen);
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x36;
    sha256_init(&s); sha256_update(&s, pad, 64); sha256_update(&s, msg, mlen); sha256_final(&s, inner);
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x5c;
    sha256_init(&s); sha256_update(&s, pad, 64); sha256_update(&s, inner, 32); sha256_final(&s, out);
}

// ---- strict unpadded base64url ----

static int b64val(uint8_t c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

// Decodes into out (room for len*3/4 bytes); -1 on a bad character, length or
// non-zero leftover bits.
static long b64url_decode(const uint8_t *in, size_t len, uint8_t *out) {
    if (len % 4 == 1) return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64val(in[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    if (acc & ((1u << bits) - 1)) return -1;
    return (long)o;
}

// ---- a small JSON object scanner: top-level string and number members ----

typedef struct { const char *p, *end; } cur_t;

static void ws(cur_t *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static bool hex4(cur_t *c, uint32_t *u) {
    if (c->end - c->p < 4) return false;
    *u = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(c->p[i]);
        if (h < 0) return false;
        *u = *u << 4 | (uint32_t)h;
    }
    c->p += 4;
    return true;
}

// Parses a string at c->p (at its opening quote). Writes the decoded UTF-8 to
// out (if not NULL; room for as many bytes as the source) and its length to *n.
static bool parse_string(cur_t *c, char *out, size_t *n) {
    size_t o = 0;
    if (c->p >= c->end || *c->p != '"') return false;
    c->p++;
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p++;
        if (ch == '"') { if (n) *n = o; return true; }
        if (ch < 0x20) return false;
        if (ch != '\\') { if (out) out[o] = (char)ch; o++; continue; }
        if (c->p >= c->end) return false;
        char e = *c->p++;
        uint32_t u;
        switch (e) {
        case '"': case '\\': case '/': u = (uint32_t)e; break;
        case 'b': u = '\b'; break;
        case 'f': u = '\f'; break;
        case 'n': u = '\n'; break;
        case 'r': u = '\r'; break;
        case 't': u = '\t'; break;
        case 'u':
            if (!hex4(c, &u)) return false;
            if (u >= 0xD800 && u < 0xDC00 && c->end - c->p >= 6 && c->p[0] == '\\' && c->p[1] == 'u') {
                cur_t save = *c;
                uint32_t lo;
                c->p += 2;
                if (hex4(c, &lo) && lo >= 0xDC00 && lo < 0xE000) u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                else *c = save;
            }
            if (u >= 0xD800 && u < 0xE000) u = 0xFFFD; // lone surrogate
            break;
        default: return false;
        }
        // UTF-8 of u never takes more bytes than its escape did.
        char enc[4];
        int k;
        if (u < 0x80) { enc[0] = (char)u; k = 1; }
        else if (u < 0x800) { enc[0] = (char)(0xC0 | u >> 6); enc[1] = (char)(0x80 | (u & 0x3F)); k = 2; }
        else if (u < 0x10000) { enc[0] = (char)(0xE0 | u >> 12); enc[1] = (char)(0x80 | (u >> 6 & 0x3F)); enc[2] = (char)(0x80 | (u & 0x3F)); k = 3; }
        else { enc[0] = (char)(0xF0 | u >> 18); enc[1] = (char)(0x80 | (u >> 12 & 0x3F)); enc[2] = (char)(0x80 | (u >> 6 & 0x3F)); enc[3] = (char)(0x80 | (u & 0x3F)); k = 4; }
        if (out) memcpy(out + o, enc, (size_t)k);
        o += (size_t)k;
    }
    return false;
}

// Parses a JSON number; its value (as a double) in *v.
static bool parse_number(cur_t *c, double *v) {
    bool neg = false;
    if (c->p < c->end && *c->p == '-') { neg = true; c->p++; }
    if (c->p >= c->end || *c->p < '0' || *c->p > '9') return false;
    double x = 0;
    if (*c->p == '0') c->p++;
    else while (c->p < c->end && *c->p >= '0' && *c->p <= '9') x = x * 10 + (*c->p++ - '0');
    double scale = 1;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (c->p >= c->end || *c->p < '0' || *c->p > '9') return false;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') { scale /= 10; x += (*c->p++ - '0') * scale; }
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        bool eneg = false;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-')) eneg = *c->p++ == '-';
        if (c->p >= c->end || *c->p < '0' || *c->p > '9') return false;
        int ex = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') { if (ex < 1000) ex = ex * 10 + (*c->p - '0'); c->p++; }
        while (ex--) x = eneg ? x / 10 : x * 10;
    }
    *v = neg ? -x : x;
    return true;
}

static bool skip_value(cur_t *c, int depth);

static bool skip_container(cur_t *c, char close, int depth) {
    c->p++; // the opening bracket
    ws(c);
    if (c->p < c->end && *c->p == close) { c->p++; return true; }
    for (;;) {
        if (close == '}') {
            if (!parse_string(c, NULL, NULL)) return false;
            ws(c);
            if (c->p >= c->end || *c->p++ != ':') return false;
        }
        if (!skip_value(c, depth + 1)) return false;
        ws(c);
        if (c->p >= c->end) return false;
        char ch = *c->p++;
        if (ch == close) return true;
        if (ch != ',') return false;
        ws(c);
    }
}

static bool literal(cur_t *c, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return false;
    c->p += n;
    return true;
}

static bool skip_value(cur_t *c, int depth) {
    double d;
    ws(c);
    if (c->p >= c->end || depth > 64) return false;
    switch (*c->p) {
    case '"': return parse_string(c, NULL, NULL);
    case '{': return skip_container(c, '}', depth);
    case '[': return skip_container(c, ']', depth);
    case 't': return literal(c, "true");
    case 'f': return literal(c, "false");
    case 'n': return literal(c, "null");
    default: return parse_number(c, &d);
    }
}

typedef enum { M_ABSENT, M_STRING, M_NUMBER, M_OTHER } member_kind_t;

typedef struct {
    const char *name;   // the member looked for
    member_kind_t kind; // what it held (the last one, if repeated)
    char *str;          // M_STRING: its decoded value (malloc'd), NUL-terminated
    size_t len;
    double num;         // M_NUMBER: its value
} member_t;

// Parses `json` as one JSON object (and nothing after it), recording the
// top-level members named in `want`.
static bool scan_object(const char *json, size_t len, member_t *want, int nwant) {
    cur_t c = { json, json + len };
    char key[32];
    ws(&c);
    if (c.p >= c.end || *c.p != '{') return false;
    c.p++;
    ws(&c);
    if (c.p < c.end && *c.p == '}') { c.p++; goto done; }
    for (;;) {
        // Keys longer than any wanted name are only validated, not kept.
        cur_t k = c;
        size_t klen;
        if (!parse_string(&k, NULL, &klen)) return false;
        if (klen < sizeof key) { parse_string(&c, key, &klen); key[klen] = 0; }
        else { c = k; key[0] = 0; klen = 0; }
        ws(&c);
        if (c.p >= c.end || *c.p++ != ':') return false;
        ws(&c);
        member_t *m = NULL;
        for (int i = 0; i < nwant; i++)
            if (strlen(want[i].name) == klen && memcmp(want[i].name, key, klen) == 0) m = &want[i];
        if (m && c.p < c.end && *c.p == '"') {
            cur_t v = c;
            size_t vlen;
            if (!parse_string(&v, NULL, &vlen)) return false;
            free(m->str);
            m->str = malloc(vlen + 1);
            parse_string(&c, m->str, &m->len);
            m->str[m->len] = 0;
            m->kind = M_STRING;
        } else if (m && c.p < c.end && (*c.p == '-' || (*c.p >= '0' && *c.p <= '9'))) {
            if (!parse_number(&c, &m->num)) return false;
            m->kind = M_NUMBER;
        } else {
            if (!skip_value(&c, 1)) return false;
            if (m) m->kind = M_OTHER;
        }
        ws(&c);
        if (c.p >= c.end) return false;
        char ch = *c.p++;
        if (ch == '}') break;
        if (ch != ',') return false;
        ws(&c);
    }
done:
    ws(&c);
    return c.p == c.end;
}

// ---- /jwt ----

// Fills sub (malloc'd, caller frees) for a valid HS256 bearer token.
static bool verify_jwt(const uint8_t *auth, size_t alen, char **sub, size_t *sublen) {
    static const char bearer[] = "bearer ";
    if (alen < 7) return false;
    for (int i = 0; i < 7; i++) {
        uint8_t ch = auth[i];
        if (ch >= 'A' && ch <= 'Z') ch += 32;
        if (ch != (uint8_t)bearer[i]) return false;
    }
    const uint8_t *tok = auth + 7, *end = auth + alen;
    while (tok < end && (*tok == ' ' || *tok == '\t')) tok++;
    while (end > tok && (end[-1] == ' ' || end[-1] == '\t')) end--;
    size_t tlen = (size_t)(end - tok);

    const uint8_t *dot1 = memchr(tok, '.', tlen);
    if (!dot1) return false;
    const uint8_t *dot2 = memchr(dot1 + 1, '.', (size_t)(end - dot1 - 1));
    if (!dot2 || memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1))) return false; // exactly three parts
    size_t hlen = (size_t)(dot1 - tok), plen = (size_t)(dot2 - dot1 - 1), slen = (size_t)(end - dot2 - 1);

    uint8_t *buf = malloc(tlen + 1); // room for any part decoded
    bool ok = false;
    member_t alg = { .name = "alg" }, want[2] = { { .name = "sub" }, { .name = "exp" } };
    long n = b64url_decode(tok, hlen, buf);
    if (n < 0 || !scan_object((const char *)buf, (size_t)n, &alg, 1)) goto out;
    if (alg.kind != M_STRING || alg.len != 5 || memcmp(alg.str, "HS256", 5) != 0) goto out;

    uint8_t mac[32];
    hmac_sha256((const uint8_t *)SECRET, sizeof SECRET - 1, tok, (size_t)(dot2 - tok), mac);
    n = b64url_decode(dot2 + 1, slen, buf);
    if (n != 32) goto out;
    uint8_t diff = 0; // constant-time comparison
    for (int i = 0; i < 32; i++) diff |= (uint8_t)(mac[i] ^ buf[i]);
    if (diff) goto out;

    n = b64url_decode(dot1 + 1, plen, buf);
    if (n < 0 || !scan_object((const char *)buf, (size_t)n, want, 2)) goto out;
    if (want[0].kind != M_STRING) goto out;
    if (want[1].kind == M_NUMBER) {
        wasi_clocks_wall_clock_datetime_t now;
        wasi_clocks_wall_clock_now(&now);
        if (want[1].num <= (double)now.seconds + now.nanoseconds / 1e9) goto out;
    }
    *sub = want[0].str;
    *sublen = want[0].len;
    want[0].str = NULL;
    ok = true;
out:
    free(buf);
    free(alg.str);
    free(want[0].str);
    free(want[1].str);
    return ok;
}

static void handle_jwt(wasi_http_types_borrow_incoming_request_t req, wasi_http_types_own_response_outparam_t out) {
    wasi_http_types_own_headers_t headers = wasi_http_types_method_incoming_request_headers(req);
    wasi_http_types_field_name_t name = { (uint8_t *)"authorization", 13 };
    wasi_http_types_list_field_value_t values;
    wasi_http_types_method_fields_get(wasi_http_types_borrow_fields(headers), &name, &values);
    char *sub = NULL;
    size_t sublen = 0;
    bool ok = values.len == 1 && verify_jwt(values.ptr[0].ptr, values.ptr[0].len, &sub, &sublen);
    wasi_http_types_list_field_value_free(&values);
    wasi_http_types_fields_drop_own(headers);
    if (!ok) {
        respond_text(out, 401, "invalid token\n");
        return;
    }
    char *body = malloc(sublen + 4);
    memcpy(body, "ok ", 3);
    memcpy(body + 3, sub, sublen);
    body[sublen + 3] = '\n';
    respond(out, 200, NULL, NULL, body, sublen + 4);
    free(body);
    free(sub);
}

// ---- routing ----

void exports_wasi_http_incoming_handler_handle(
    exports_wasi_http_incoming_handler_own_incoming_request_t request,
    exports_wasi_http_incoming_handler_own_response_outparam_t out) {
    wasi_http_types_borrow_incoming_request_t req = wasi_http_types_borrow_incoming_request(request);
    proxy_string_t pq = { 0 };
    wasi_http_types_method_incoming_request_path_with_query(req, &pq);
    size_t plen = 0;
    while (plen < pq.len && pq.ptr[plen] != '?') plen++;
    wasi_http_types_method_t method;
    wasi_http_types_method_incoming_request_method(req, &method);
    bool get = method.tag == WASI_HTTP_TYPES_METHOD_GET;
    wasi_http_types_method_free(&method);

#define IS(path) (plen == sizeof(path) - 1 && memcmp(pq.ptr, path, plen) == 0)
    if (IS("/hello") || IS("/jwt")) {
        if (!get) respond(out, 405, "allow", "GET", "method not allowed\n", 19);
        else if (IS("/hello")) respond_text(out, 200, "Hello, wedge\n");
        else handle_jwt(req, out);
    } else {
        respond_text(out, 404, "not found\n");
    }
#undef IS
    proxy_string_free(&pq);
    wasi_http_types_incoming_request_drop_own(request);
}
