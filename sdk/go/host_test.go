package wedge

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// memHost is a host in memory, recording what the SDK sends it.
type memHost struct {
	head    []byte
	body    *bytes.Reader
	heads   [][]string
	out     bytes.Buffer
	writes  int
	flushes int
	failed  string
	refuse  bool
}

func newHost(fields []string, body string) *memHost {
	return &memHost{head: encodeRecord(fields), body: bytes.NewReader([]byte(body))}
}

func (h *memHost) requestHead(buf []byte) int {
	if len(h.head) <= len(buf) {
		copy(buf, h.head)
	}
	return len(h.head)
}

func (h *memHost) read(buf []byte) int {
	n, _ := h.body.Read(buf)
	return n
}

func (h *memHost) respond(head []byte) int {
	f, err := decodeRecord(head)
	if err != nil {
		panic(err)
	}
	h.heads = append(h.heads, f)
	return 0
}

func (h *memHost) write(p []byte) int {
	if h.refuse {
		return -1
	}
	h.writes++
	h.out.Write(p)
	return 0
}

func (h *memHost) flush() int    { h.flushes++; return 0 }
func (h *memHost) fail(m string) { h.failed = m }

func serveWith(t *testing.T, hd http.Handler, h *memHost) int32 {
	t.Helper()
	handler = hd
	defer func() { handler = nil }()
	return handle(h)
}

func TestRecordsRoundTripAndMalformedOnesAreRefused(t *testing.T) {
	in := []string{":status", "200", "", "x-a", strings.Repeat("v", 300)}
	out, err := decodeRecord(encodeRecord(in))
	if err != nil || strings.Join(out, "|") != strings.Join(in, "|") {
		t.Fatalf("round trip: %q %v", out, err)
	}
	rec := encodeRecord(in)
	for _, bad := range [][]byte{nil, rec[:3], rec[:len(rec)-1], append(append([]byte{}, rec...), 0)} {
		if _, err := decodeRecord(bad); err == nil {
			t.Errorf("accepted %d malformed bytes", len(bad))
		}
	}
	huge := encodeRecord(nil)
	huge[0], huge[3] = 0xff, 0x7f
	if _, err := decodeRecord(huge); err == nil {
		t.Error("accepted a count past the bound")
	}
}

func TestARequestIsBuiltFromTheHead(t *testing.T) {
	h := newHost([]string{":method", "POST", ":path", "/a/b?x=1", ":id", "r-1", ":remote", "1.2.3.4:5",
		":content-length", "5", ":param:name", "ada", ":future", "ignored", "host", "example.com",
		"x-multi", "1", "x-multi", "2"}, "hello")
	var got *http.Request
	var body string
	code := serveWith(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		b, _ := io.ReadAll(r.Body)
		body = string(b)
	}), h)
	if code != 0 {
		t.Fatalf("code %d: %s", code, h.failed)
	}
	checks := map[string][2]string{
		"method": {got.Method, "POST"},
		"path":   {got.URL.Path, "/a/b"},
		"query":  {got.URL.RawQuery, "x=1"},
		"host":   {got.Host, "example.com"},
		"remote": {got.RemoteAddr, "1.2.3.4:5"},
		"id":     {RequestID(got.Context()), "r-1"},
		"param":  {got.PathValue("name"), "ada"},
		"multi":  {strings.Join(got.Header.Values("X-Multi"), ","), "1,2"},
		"body":   {body, "hello"},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s: %q, want %q", name, c[0], c[1])
		}
	}
	if got.ContentLength != 5 {
		t.Errorf("content length %d", got.ContentLength)
	}
	if got.TLS != nil {
		t.Errorf("a request without :scheme has TLS state")
	}
}

func TestARequestOverTLSSaysSo(t *testing.T) {
	h := newHost([]string{":method", "GET", ":path", "/", ":id", "r-2", ":scheme", "https"}, "")
	var got *http.Request
	code := serveWith(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
	}), h)
	if code != 0 {
		t.Fatalf("code %d: %s", code, h.failed)
	}
	if got.TLS == nil || !got.TLS.HandshakeComplete {
		t.Fatalf("TLS state %+v, want a completed handshake", got.TLS)
	}
}

func TestASmallResponseIsSentWholeAndALargeOneStreams(t *testing.T) {
	h := newHost([]string{":method", "GET", ":path", "/"}, "")
	serveWith(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(201)
		io.WriteString(w, "<html>small")
	}), h)
	if len(h.heads) != 1 || h.heads[0][1] != "201" || h.writes != 1 || h.out.String() != "<html>small" {
		t.Fatalf("heads %q, %d writes, %q", h.heads, h.writes, h.out.String())
	}
	if !strings.Contains(strings.Join(h.heads[0], " "), "text/html") {
		t.Errorf("content type not sniffed: %q", h.heads[0])
	}

	h = newHost([]string{":method", "GET", ":path", "/"}, "")
	big := strings.Repeat("x", 3*bufSize+7)
	serveWith(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < len(big); i += 1000 {
			io.WriteString(w, big[i:min(i+1000, len(big))])
		}
	}), h)
	if h.out.String() != big || h.writes < 3 || len(h.heads) != 1 || h.heads[0][1] != "200" {
		t.Fatalf("%d bytes in %d writes, heads %q", h.out.Len(), h.writes, h.heads)
	}

	// Flush sends at once; a refused write is an error to the handler.
	h = newHost([]string{":method", "GET", ":path", "/"}, "")
	var err error
	serveWith(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "a")
		w.(http.Flusher).Flush()
		h.refuse = true
		_, err = w.Write([]byte(strings.Repeat("b", bufSize+1)))
	}), h)
	if h.flushes != 1 || h.out.String() != "a" || !errors.Is(err, errGone) {
		t.Fatalf("flushes %d, out %q, err %v", h.flushes, h.out.String(), err)
	}
}

func TestAPanicFailsTheInvocationWithItsReason(t *testing.T) {
	h := newHost([]string{":method", "GET", ":path", "/"}, "")
	code := serveWith(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic("boom")
	}), h)
	if code != 1 || h.failed != "panic: boom" || len(h.heads) != 0 {
		t.Fatalf("code %d, failed %q, heads %q", code, h.failed, h.heads)
	}
	h = newHost(nil, "")
	if code := handle(h); code != 1 || !strings.Contains(h.failed, "no handler registered") {
		t.Fatalf("no handler: %d %q", code, h.failed)
	}
}

func event(headers []string, body string) *memHost {
	return newHost(append([]string{":method", "POST", ":path", "/"}, headers...), body)
}

func TestEventsInBothModesAndTheirAnswers(t *testing.T) {
	var got Event
	f := func(ctx context.Context, ev Event) error {
		got = ev
		switch ev.Type {
		case "fail":
			return errors.New("try again")
		case "reject":
			return Permanent(errors.New("never"))
		}
		return nil
	}
	binary := []string{"ce-specversion", "1.0", "ce-id", "1", "ce-source", "/s", "ce-type", "ok",
		"ce-time", "2026-11-30T10:00:00Z", "ce-subject", "caf%C3%A9", "ce-traceid", "t", "content-type", "text/plain"}
	h := event(binary, "data")
	serveWith(t, EventHandler(f), h)
	if h.heads[0][1] != "204" || got.ID != "1" || got.Subject != "café" || string(got.Data) != "data" ||
		got.Extensions["traceid"] != "t" || got.Time.Year() != 2026 || got.DataContentType != "text/plain" {
		t.Fatalf("binary: %q %+v", h.heads, got)
	}
	structured := `{"specversion":"1.0","id":"2","source":"/s","type":"reject","ext":7,"data_base64":"aGk="}`
	h = event([]string{"content-type", "application/cloudevents+json"}, structured)
	serveWith(t, EventHandler(f), h)
	if h.heads[0][1] != "422" || string(got.Data) != "hi" || got.Extensions["ext"] != "7" {
		t.Fatalf("structured: %q %+v", h.heads, got)
	}
	h = event([]string{"content-type", "application/cloudevents+json"},
		`{"specversion":"1.0","id":"3","source":"/s","type":"fail","datacontenttype":"text/plain","data":"plain"}`)
	serveWith(t, EventHandler(f), h)
	if h.heads[0][1] != "500" || string(got.Data) != "plain" {
		t.Fatalf("text data: %q %q", h.heads, got.Data)
	}
	for _, bad := range [][]string{
		{"ce-specversion", "0.3", "ce-id", "1", "ce-source", "/s", "ce-type", "ok"},
		{"ce-specversion", "1.0", "ce-source", "/s", "ce-type", "ok"},
		{"ce-specversion", "1.0", "ce-id", "1", "ce-source", "/s", "ce-type", "ok", "ce-time", "yesterday"},
	} {
		h = event(bad, "")
		serveWith(t, EventHandler(f), h)
		if h.heads[0][1] != "400" {
			t.Errorf("%q answered %q", bad, h.heads)
		}
	}
}

func TestAStreamFailsWithAStatusOrACut(t *testing.T) {
	f := func(ctx context.Context, in io.Reader, out io.Writer) error {
		b, _ := io.ReadAll(in)
		if len(b) > 3 {
			out.Write(b[:3])
		}
		return errors.New("bad input")
	}
	h := newHost([]string{":method", "POST", ":path", "/"}, "ab")
	if code := serveWith(t, StreamHandler(f), h); code != 0 || h.heads[0][1] != "500" {
		t.Fatalf("before output: %d %q", code, h.heads)
	}
	h = newHost([]string{":method", "POST", ":path", "/"}, "abcdef")
	code := serveWith(t, StreamHandler(f), h)
	if code != 1 || h.out.String() != "abc" || !strings.Contains(h.failed, "bad input") || h.flushes == 0 {
		t.Fatalf("after output: %d %q %q", code, h.out.String(), h.failed)
	}
}
