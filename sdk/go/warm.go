package wedge

import (
	"io"
	"unsafe"
)

// warmHost serves one made-up request and discards the response. The
// warm-up runs the SDK's own request and response code through it once, so
// that what net/http and its helpers build lazily on first use (textproto's
// table of common header names, which every request needs since hosts send
// header names in lower case; the caches of the type assertions on the body
// path) is built before the snapshot instead of in every request. The
// user's handler is never called.
type warmHost struct {
	head []byte
	body string
}

func (h *warmHost) requestHead(buf []byte) int {
	if len(h.head) <= len(buf) {
		copy(buf, h.head)
	}
	return len(h.head)
}

func (h *warmHost) read(p []byte) int {
	if h.body == "" || len(p) == 0 {
		return 0
	}
	n := copy(p, h.body)
	h.body = h.body[n:]
	return n
}

func (h *warmHost) respond([]byte) int { return 0 }
func (h *warmHost) write([]byte) int   { return 0 }
func (h *warmHost) flush() int         { return 0 }
func (h *warmHost) fail(string)        {}

// warmRequest is a typical request as the host encodes it.
var warmRequest = []string{
	":method", "POST", ":path", "/warm/up?a=1&b=2", ":proto", "HTTP/1.1",
	":id", "warm-up", ":remote", "127.0.0.1:1", ":local", "127.0.0.1:2",
	":route", "/warm/:name", ":param:name", "up", ":content-length", "4",
	"host", "localhost", "user-agent", "wedge-warm-up", "accept", "*/*",
	"accept-encoding", "gzip", "accept-language", "en", "content-type", "text/plain",
	"content-length", "4", "connection", "keep-alive", "cache-control", "no-cache",
	"cookie", "a=b", "x-forwarded-for", "127.0.0.1",
}

func warmSDK() {
	h := &warmHost{head: encodeRecord(warmRequest), body: "warm"}
	r, err := readRequest(h)
	if err != nil {
		return
	}
	_, _ = io.ReadAll(r.Body)
	_ = r.PathValue("name")
	_ = r.URL.Query()
	_, _ = r.Cookie("a")
	w := newResponse(h)
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("<!doctype html><p>warm</p>"))
	w.finish()
}

// The largest object the Go runtime allocates from size-classed spans.
const maxSmallSize = 32 << 10

const ptrSize = int(unsafe.Sizeof(uintptr(0)))

var spanSink []any

// cacheSpans allocates one object of every small size class, with and
// without pointers, so that the snapshot's allocator holds a span of each
// class. A request then allocates from those spans instead of fetching a
// span from the heap for each class it uses: that path writes the heap's
// bookkeeping all over memory, and every page it writes is a copy-on-write
// fault in a fresh instance. The classes are found, not listed: append
// rounds a new slice's capacity up to its size class.
func cacheSpans() {
	zeros := make([]byte, maxSmallSize)
	for size := 1; size <= maxSmallSize; {
		b := append([]byte(nil), zeros[:size]...)
		class := cap(b)
		spanSink = append(spanSink, b)
		if class >= 16 {
			// Objects with pointers above 512 bytes carry a one-word
			// header (Go 1.22 and later), so leave room for it. Were that
			// to change, some classes would just not be cached.
			words := class / ptrSize
			if class > 512 {
				words--
			}
			spanSink = append(spanSink, make([]unsafe.Pointer, words))
		}
		size = class + 1
	}
	spanSink = nil
}
