package wedge

import (
	"context"
	"io"
	"net/http"
)

// HandleStream makes f the function's handler (see StreamHandler). Call it
// once, from an init function.
func HandleStream(f func(ctx context.Context, in io.Reader, out io.Writer) error) {
	Serve(StreamHandler(f))
}

// StreamHandler adapts f into an http.Handler for stream functions: f reads
// the request body as it arrives and writes the response body as it goes
// (application/octet-stream, status 200). Each side waits for the other
// end: a slow client slows f's writes, a slow sender its reads, so memory
// stays bounded however long the stream. An error before any output answers
// 500 with its message; after output has started it cuts the response short
// and wedge logs it with the request id.
func StreamHandler(f func(ctx context.Context, in io.Reader, out io.Writer) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		out := &streamWriter{w: w}
		err := f(r.Context(), r.Body, out)
		if err == nil {
			return
		}
		if !out.started {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		panic(abort{"stream function failed after its output started: " + err.Error()})
	})
}

// abort ends an invocation with a reason, without a stack trace.
type abort struct{ reason string }

type streamWriter struct {
	w       http.ResponseWriter
	started bool
}

func (s *streamWriter) Write(p []byte) (int, error) {
	s.started = true
	n, err := s.w.Write(p)
	if err != nil {
		return n, err
	}
	s.w.(http.Flusher).Flush()
	if r, ok := s.w.(*response); ok && r.err != nil {
		return n, r.err
	}
	return n, nil
}
