package wedge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// The largest request head the SDK accepts from the host.
const maxHead = 1 << 20

// How much of a response is held before it is handed to the host.
const bufSize = 32 << 10

var (
	errBody  = errors.New("wedge: the request body could not be read (over the function's limit, too slow, or the client left)")
	errGone  = errors.New("wedge: the response can take no more (the client left, or the body is over the function's limit)")
	errHeads = errors.New("wedge: the host refused the response head")
)

// headBuf receives the request head: an instance serves one request, so a
// buffer in the snapshot's memory saves an allocation.
var headBuf [4 << 10]byte

func readRequest(h host) (*http.Request, error) {
	buf := headBuf[:]
	n := h.requestHead(buf)
	if n > len(buf) {
		if n > maxHead {
			return nil, fmt.Errorf("wedge: request head of %d bytes is over %d", n, maxHead)
		}
		buf = make([]byte, n)
		n = h.requestHead(buf)
		if n != len(buf) {
			return nil, errRecord
		}
	}
	fields, err := decodeRecord(buf[:n])
	if err != nil {
		return nil, err
	}
	if len(fields)%2 != 0 {
		return nil, errRecord
	}
	r := &http.Request{
		Method:     "GET",
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header),
		RequestURI: "/",
	}
	var id string
	var params [][2]string
	contentLength := int64(-1)
	for i := 0; i < len(fields); i += 2 {
		k, v := fields[i], fields[i+1]
		switch {
		case k == ":method":
			r.Method = v
		case k == ":path":
			r.RequestURI = v
		case k == ":proto":
			if major, minor, ok := http.ParseHTTPVersion(v); ok {
				r.Proto, r.ProtoMajor, r.ProtoMinor = v, major, minor
			}
		case k == ":remote":
			r.RemoteAddr = v
		case k == ":scheme":
			if v == "https" {
				// As net/http/cgi does for HTTPS=on: what the handshake
				// negotiated stays with the server.
				r.TLS = &tls.ConnectionState{HandshakeComplete: true}
			}
		case k == ":id":
			id = v
		case k == ":content-length":
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
				contentLength = n
			}
		case strings.HasPrefix(k, ":param:"):
			params = append(params, [2]string{k[len(":param:"):], v})
		case strings.HasPrefix(k, ":"):
			// A pseudo-field of a later ABI revision: ignored.
		default:
			r.Header.Add(k, v)
		}
	}
	u, err := url.ParseRequestURI(r.RequestURI)
	if err != nil {
		return nil, fmt.Errorf("wedge: bad request target %q: %v", r.RequestURI, err)
	}
	r.URL = u
	r.Host = r.Header.Get("Host")
	r.Header.Del("Host")
	r.ContentLength = contentLength
	if contentLength == 0 {
		r.Body = http.NoBody
	} else {
		r.Body = io.NopCloser(&bodyReader{h: h})
	}
	for _, p := range params {
		r.SetPathValue(p[0], p[1])
	}
	return r.WithContext(context.WithValue(context.Background(), requestIDKey, id)), nil
}

type bodyReader struct {
	h    host
	done bool
	err  error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	n := b.h.read(p)
	switch {
	case n > 0:
		return n, nil
	case n == 0:
		b.done = true
		return 0, io.EOF
	default:
		b.err = errBody
		return 0, b.err
	}
}

// response is the http.ResponseWriter (and http.Flusher) handlers get.
type response struct {
	h           host
	header      http.Header
	status      int
	wroteHeader bool
	sent        bool
	buf         []byte
	err         error
}

func newResponse(h host) *response {
	return &response{h: h, header: make(http.Header)}
}

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if w.wroteHeader || code < 200 {
		// Informational responses are not passed on; a second call is
		// ignored, as net/http does.
		return
	}
	w.wroteHeader = true
	w.status = code
}

func (w *response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if len(w.buf)+len(p) <= bufSize {
		w.buf = append(w.buf, p...)
		return len(p), nil
	}
	if err := w.drain(); err != nil {
		return 0, err
	}
	if len(p) <= bufSize {
		w.buf = append(w.buf, p...)
		return len(p), nil
	}
	if err := w.send(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteString avoids a copy for io.WriteString callers.
func (w *response) WriteString(s string) (int, error) { return w.Write([]byte(s)) }

// Flush sends the head and everything written so far to the client now.
func (w *response) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.drain() == nil {
		w.h.flush()
	}
}

// drain sends the head, if not yet sent, and the buffered body.
func (w *response) drain() error {
	if w.err != nil {
		return w.err
	}
	if !w.sent {
		if err := w.sendHead(); err != nil {
			return err
		}
	}
	if len(w.buf) > 0 {
		err := w.send(w.buf)
		w.buf = w.buf[:0]
		return err
	}
	return nil
}

func (w *response) send(p []byte) error {
	if w.h.write(p) < 0 {
		w.err = errGone
	}
	return w.err
}

func (w *response) sendHead() error {
	w.sent = true
	h := w.header
	if _, ok := h["Content-Type"]; !ok && len(w.buf) > 0 && h.Get("Content-Encoding") == "" {
		h.Set("Content-Type", http.DetectContentType(w.buf))
	}
	fields := []string{":status", strconv.Itoa(w.status)}
	for k, vs := range h {
		for _, v := range vs {
			fields = append(fields, k, v)
		}
	}
	if w.h.respond(encodeRecord(fields)) < 0 {
		w.err = errHeads
	}
	return w.err
}

// finish completes the response after the handler returned.
func (w *response) finish() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.drain()
}
