package wedge

// warmHost serves one made-up request and discards the response. The
// warm-up runs the SDK's own request and response code through it once, so
// that what net/http and its helpers build lazily on first use (textproto's
// table of common header names, which every request needs since hosts send
// header names in lower case) is built before the snapshot instead of in
// every request. The user's handler is never called.
type warmHost struct{ head []byte }

func (h *warmHost) requestHead(buf []byte) int {
	if len(h.head) <= len(buf) {
		copy(buf, h.head)
	}
	return len(h.head)
}

func (h *warmHost) read([]byte) int    { return 0 }
func (h *warmHost) respond([]byte) int { return 0 }
func (h *warmHost) write([]byte) int   { return 0 }
func (h *warmHost) flush() int         { return 0 }
func (h *warmHost) fail(string)        {}

// warmRequest is a typical request as the host encodes it.
var warmRequest = []string{
	":method", "POST", ":path", "/warm/up?a=1&b=2", ":proto", "HTTP/1.1",
	":id", "warm-up", ":remote", "127.0.0.1:1", ":local", "127.0.0.1:2",
	":route", "/warm/:name", ":param:name", "up", ":content-length", "0",
	"host", "localhost", "user-agent", "wedge-warm-up", "accept", "*/*",
	"accept-encoding", "gzip", "accept-language", "en", "content-type", "text/plain",
	"content-length", "0", "connection", "keep-alive", "cache-control", "no-cache",
	"cookie", "a=b", "x-forwarded-for", "127.0.0.1",
}

func warmSDK() {
	h := &warmHost{head: encodeRecord(warmRequest)}
	r, err := readRequest(h)
	if err != nil {
		return
	}
	_ = r.PathValue("name")
	_ = r.URL.Query()
	_, _ = r.Cookie("a")
	w := newResponse(h)
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("<!doctype html><p>warm</p>"))
	w.finish()
}
