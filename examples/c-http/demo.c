// A wasi:http/proxy 0.2 component in C (bindings from `wit-bindgen c`).
// Paths are matched by their last segment, so it works under any route prefix:
//   GET  .../hello             -> "hello from a wasi:http component\n" (and a log line on stdout)
//   POST .../echo              -> the request body back, with its content-type
//   GET  .../outbound?H:P/PATH -> fetches http://H:P/PATH and relays status and body;
//                                 502 naming the error code when the host refuses it
//   POST .../pipe              -> answers 200 at once, then streams the request body back
//                                 as it arrives (a streaming echo: memory stays flat)
//   POST .../count             -> reads the whole body as a stream; answers its length and sum
//   GET  .../bytes?N           -> streams N bytes (byte i is i % 251)
//   GET  .../trap              -> traps (unreachable)
//   GET  .../burn?N            -> spends CPU on N million rounds of a hash, answers the result
//                                 (a guest to profile)
// Anything else is 404.
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "proxy.h"

typedef struct { uint8_t *ptr; size_t len, cap; } buf_t;

static void buf_push(buf_t *b, const uint8_t *p, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->ptr = realloc(b->ptr, b->cap);
    }
    memcpy(b->ptr + b->len, p, n);
    b->len += n;
}

static void add_header(wasi_http_types_own_fields_t h, const char *name, const uint8_t *v, size_t n) {
    wasi_http_types_field_name_t key;
    proxy_string_dup(&key, name);
    wasi_http_types_field_value_t value = { (uint8_t *)v, n };
    wasi_http_types_header_error_t err;
    wasi_http_types_method_fields_append(wasi_http_types_borrow_fields(h), &key, &value, &err);
    proxy_string_free(&key);
}

static void respond(wasi_http_types_own_response_outparam_t out, uint16_t status,
                    const char *content_type, const uint8_t *body, size_t len) {
    wasi_http_types_own_fields_t headers = wasi_http_types_constructor_fields();
    if (content_type) add_header(headers, "content-type", (const uint8_t *)content_type, strlen(content_type));
    wasi_http_types_own_outgoing_response_t resp = wasi_http_types_constructor_outgoing_response(headers);
    wasi_http_types_method_outgoing_response_set_status_code(wasi_http_types_borrow_outgoing_response(resp), status);
    wasi_http_types_own_outgoing_body_t body_res;
    wasi_http_types_method_outgoing_response_body(wasi_http_types_borrow_outgoing_response(resp), &body_res);
    wasi_http_types_result_own_outgoing_response_error_code_t result = { .is_err = false, .val = { .ok = resp } };
    wasi_http_types_static_response_outparam_set(out, &result);

    wasi_http_types_own_output_stream_t stream;
    wasi_http_types_method_outgoing_body_write(wasi_http_types_borrow_outgoing_body(body_res), &stream);
    size_t off = 0;
    while (off < len) {
        size_t n = len - off > 4096 ? 4096 : len - off;
        proxy_list_u8_t chunk = { (uint8_t *)body + off, n };
        wasi_io_streams_stream_error_t err;
        if (!wasi_io_streams_method_output_stream_blocking_write_and_flush(
                wasi_io_streams_borrow_output_stream(stream), &chunk, &err)) break;
        off += n;
    }
    wasi_io_streams_output_stream_drop_own(stream);
    wasi_http_types_error_code_t ferr;
    wasi_http_types_static_outgoing_body_finish(body_res, NULL, &ferr);
}

// Writes all of `data` to `stream` as fast as the host takes it (check-write,
// then write, waiting while the host's buffer is full). False when the
// stream failed (the client left, say).
static bool write_all(wasi_io_streams_borrow_output_stream_t stream, const uint8_t *data, size_t len) {
    size_t off = 0;
    while (off < len) {
        uint64_t room;
        wasi_io_streams_stream_error_t err;
        if (!wasi_io_streams_method_output_stream_check_write(stream, &room, &err)) return false;
        if (room == 0) {
            wasi_io_poll_own_pollable_t ready = wasi_io_streams_method_output_stream_subscribe(stream);
            wasi_io_poll_method_pollable_block(wasi_io_poll_borrow_pollable(ready));
            wasi_io_poll_pollable_drop_own(ready);
            continue;
        }
        size_t n = len - off < room ? len - off : (size_t)room;
        proxy_list_u8_t chunk = { (uint8_t *)data + off, n };
        if (!wasi_io_streams_method_output_stream_write(stream, &chunk, &err)) return false;
        off += n;
    }
    return true;
}

// Starts a 200 response whose body the caller streams; gives the body and its stream.
static wasi_http_types_own_output_stream_t start_stream(wasi_http_types_own_response_outparam_t out,
                                                        const char *content_type,
                                                        wasi_http_types_own_outgoing_body_t *body) {
    wasi_http_types_own_fields_t headers = wasi_http_types_constructor_fields();
    add_header(headers, "content-type", (const uint8_t *)content_type, strlen(content_type));
    wasi_http_types_own_outgoing_response_t resp = wasi_http_types_constructor_outgoing_response(headers);
    wasi_http_types_method_outgoing_response_body(wasi_http_types_borrow_outgoing_response(resp), body);
    wasi_http_types_result_own_outgoing_response_error_code_t result = { .is_err = false, .val = { .ok = resp } };
    wasi_http_types_static_response_outparam_set(out, &result);
    wasi_http_types_own_output_stream_t stream;
    wasi_http_types_method_outgoing_body_write(wasi_http_types_borrow_outgoing_body(*body), &stream);
    return stream;
}

static void finish_stream(wasi_http_types_own_output_stream_t stream, wasi_http_types_own_outgoing_body_t body) {
    wasi_io_streams_stream_error_t err;
    wasi_io_streams_method_output_stream_blocking_flush(wasi_io_streams_borrow_output_stream(stream), &err);
    wasi_io_streams_output_stream_drop_own(stream);
    wasi_http_types_error_code_t ferr;
    wasi_http_types_static_outgoing_body_finish(body, NULL, &ferr);
}

// Reads the request body chunk by chunk; `each` sees every chunk. False when
// the body ended in an error (too large, too slow, cut off).
static bool each_chunk(wasi_http_types_borrow_incoming_request_t req,
                       bool (*each)(void *ctx, const uint8_t *p, size_t n), void *ctx) {
    wasi_http_types_own_incoming_body_t body;
    if (!wasi_http_types_method_incoming_request_consume(req, &body)) return false;
    wasi_http_types_own_input_stream_t in;
    if (!wasi_http_types_method_incoming_body_stream(wasi_http_types_borrow_incoming_body(body), &in)) return false;
    bool ok = true;
    for (;;) {
        proxy_list_u8_t chunk;
        wasi_io_streams_stream_error_t err;
        if (!wasi_io_streams_method_input_stream_blocking_read(
                wasi_io_streams_borrow_input_stream(in), 65536, &chunk, &err)) {
            ok = err.tag == WASI_IO_STREAMS_STREAM_ERROR_CLOSED;
            break;
        }
        bool more = each(ctx, chunk.ptr, chunk.len);
        proxy_list_u8_free(&chunk);
        if (!more) { ok = false; break; }
    }
    wasi_io_streams_input_stream_drop_own(in);
    wasi_http_types_incoming_body_drop_own(body);
    return ok;
}

static bool pipe_chunk(void *ctx, const uint8_t *p, size_t n) {
    return write_all(wasi_io_streams_borrow_output_stream(*(wasi_http_types_own_output_stream_t *)ctx), p, n);
}

typedef struct { uint64_t len, sum; } tally_t;

static bool count_chunk(void *ctx, const uint8_t *p, size_t n) {
    tally_t *t = ctx;
    for (size_t i = 0; i < n; i++) t->sum += p[i];
    t->len += n;
    return true;
}

static uint8_t pattern[65536 + 251];

static void stream_bytes(wasi_http_types_own_response_outparam_t out, long long n) {
    for (size_t i = 0; i < sizeof pattern; i++) pattern[i] = (uint8_t)(i % 251);
    wasi_http_types_own_outgoing_body_t body;
    wasi_http_types_own_output_stream_t stream = start_stream(out, "application/octet-stream", &body);
    long long off = 0;
    while (off < n) {
        size_t len = n - off < 65536 ? (size_t)(n - off) : 65536;
        if (!write_all(wasi_io_streams_borrow_output_stream(stream), pattern + off % 251, len)) break;
        off += len;
    }
    finish_stream(stream, body);
}

static void respond_text(wasi_http_types_own_response_outparam_t out, uint16_t status, const char *text) {
    respond(out, status, "text/plain", (const uint8_t *)text, strlen(text));
}

static buf_t read_body(wasi_http_types_own_incoming_body_t body) {
    buf_t b = {0};
    wasi_http_types_own_input_stream_t in;
    if (!wasi_http_types_method_incoming_body_stream(wasi_http_types_borrow_incoming_body(body), &in)) return b;
    for (;;) {
        proxy_list_u8_t chunk;
        wasi_io_streams_stream_error_t err;
        if (!wasi_io_streams_method_input_stream_blocking_read(
                wasi_io_streams_borrow_input_stream(in), 65536, &chunk, &err)) break;
        buf_push(&b, chunk.ptr, chunk.len);
        proxy_list_u8_free(&chunk);
    }
    wasi_io_streams_input_stream_drop_own(in);
    return b;
}

static void outbound(const char *target, wasi_http_types_own_response_outparam_t out) {
    const char *slash = strchr(target, '/');
    size_t alen = slash ? (size_t)(slash - target) : strlen(target);
    wasi_http_types_own_outgoing_request_t req =
        wasi_http_types_constructor_outgoing_request(wasi_http_types_constructor_fields());
    wasi_http_types_borrow_outgoing_request_t b = wasi_http_types_borrow_outgoing_request(req);
    wasi_http_types_scheme_t scheme = { .tag = WASI_HTTP_TYPES_SCHEME_HTTP };
    wasi_http_types_method_outgoing_request_set_scheme(b, &scheme);
    proxy_string_t authority, path;
    proxy_string_dup_n(&authority, target, alen);
    proxy_string_dup(&path, slash ? slash : "/");
    wasi_http_types_method_outgoing_request_set_authority(b, &authority);
    wasi_http_types_method_outgoing_request_set_path_with_query(b, &path);

    wasi_http_outgoing_handler_own_future_incoming_response_t fut;
    wasi_http_outgoing_handler_error_code_t err;
    char msg[128];
    if (!wasi_http_outgoing_handler_handle(req, NULL, &fut, &err)) {
        snprintf(msg, sizeof msg, "outbound request refused: error code %d\n", err.tag);
        respond_text(out, 502, msg);
        return;
    }
    wasi_io_poll_own_pollable_t ready = wasi_http_types_method_future_incoming_response_subscribe(
        wasi_http_types_borrow_future_incoming_response(fut));
    wasi_io_poll_method_pollable_block(wasi_io_poll_borrow_pollable(ready));
    wasi_io_poll_pollable_drop_own(ready);
    wasi_http_types_result_result_own_incoming_response_error_code_void_t got;
    wasi_http_types_method_future_incoming_response_get(wasi_http_types_borrow_future_incoming_response(fut), &got);
    if (got.is_err || got.val.ok.is_err) {
        int code = got.is_err ? -1 : got.val.ok.val.err.tag;
        snprintf(msg, sizeof msg, "outbound request failed: error code %d\n", code);
        respond_text(out, 502, msg);
        return;
    }
    wasi_http_types_own_incoming_response_t resp = got.val.ok.val.ok;
    uint16_t status = wasi_http_types_method_incoming_response_status(wasi_http_types_borrow_incoming_response(resp));
    wasi_http_types_own_incoming_body_t body;
    buf_t data = {0};
    if (wasi_http_types_method_incoming_response_consume(wasi_http_types_borrow_incoming_response(resp), &body)) {
        data = read_body(body);
    }
    respond(out, status, "text/plain", data.ptr, data.len);
}

// Kept out of line so that it has its own frame (and name) in a profile.
__attribute__((noinline)) static uint32_t burn(long rounds) {
    uint32_t h = 2166136261u;
    for (long i = 0; i < rounds; i++) {
        h ^= (uint32_t)i;
        h *= 16777619u;
    }
    return h;
}

void exports_wasi_http_incoming_handler_handle(
    exports_wasi_http_incoming_handler_own_incoming_request_t request,
    exports_wasi_http_incoming_handler_own_response_outparam_t out) {
    wasi_http_types_borrow_incoming_request_t req = wasi_http_types_borrow_incoming_request(request);
    proxy_string_t pq = {0};
    wasi_http_types_method_incoming_request_path_with_query(req, &pq);
    char path[512] = {0};
    memcpy(path, pq.ptr, pq.len < sizeof path - 1 ? pq.len : sizeof path - 1);

    char *query = strchr(path, '?');
    if (query) *query++ = 0;
    const char *last = strrchr(path, '/');
    last = last ? last : path;

    if (strcmp(last, "/hello") == 0) {
        printf("handling /hello\n");
        fflush(stdout);
        respond_text(out, 200, "hello from a wasi:http component\n");
    } else if (strcmp(last, "/echo") == 0) {
        wasi_http_types_own_headers_t headers = wasi_http_types_method_incoming_request_headers(req);
        wasi_http_types_field_name_t name;
        proxy_string_dup(&name, "content-type");
        wasi_http_types_list_field_value_t values;
        wasi_http_types_method_fields_get(wasi_http_types_borrow_fields(headers), &name, &values);
        char ct[256] = "application/octet-stream";
        if (values.len > 0) {
            size_t n = values.ptr[0].len < sizeof ct - 1 ? values.ptr[0].len : sizeof ct - 1;
            memcpy(ct, values.ptr[0].ptr, n);
            ct[n] = 0;
        }
        wasi_http_types_own_incoming_body_t body;
        buf_t data = {0};
        if (wasi_http_types_method_incoming_request_consume(req, &body)) data = read_body(body);
        respond(out, 200, ct, data.ptr, data.len);
    } else if (strcmp(last, "/pipe") == 0) {
        wasi_http_types_own_outgoing_body_t body;
        wasi_http_types_own_output_stream_t stream = start_stream(out, "application/octet-stream", &body);
        if (each_chunk(req, pipe_chunk, &stream)) {
            finish_stream(stream, body);
        } else {
            // Unfinished, the body ends in an error: the client sees it cut short.
            wasi_io_streams_output_stream_drop_own(stream);
            wasi_http_types_outgoing_body_drop_own(body);
        }
    } else if (strcmp(last, "/count") == 0) {
        tally_t t = {0};
        bool ok = each_chunk(req, count_chunk, &t);
        char text[96];
        snprintf(text, sizeof text, "%llu bytes, sum %llu%s\n", (unsigned long long)t.len,
                 (unsigned long long)t.sum, ok ? "" : " (the body ended in an error)");
        respond_text(out, 200, text);
    } else if (strcmp(last, "/bytes") == 0) {
        stream_bytes(out, query ? atoll(query) : 0);
    } else if (strcmp(last, "/outbound") == 0 && query) {
        outbound(query, out);
    } else if (strcmp(last, "/burn") == 0) {
        long millions = query ? atol(query) : 1;
        char text[64];
        snprintf(text, sizeof text, "%u\n", (unsigned)burn(millions * 1000000L));
        respond_text(out, 200, text);
    } else if (strcmp(last, "/trap") == 0) {
        __builtin_trap();
    } else {
        respond_text(out, 404, "not found\n");
    }
}
