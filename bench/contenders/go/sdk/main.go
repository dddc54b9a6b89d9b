// The Go SDK contender of the wedge benchmarks: every route of
// bench/WORKLOADS.md as plain net/http handlers, registered with wedge's Go
// SDK (sdk/go). Built as a WASI reactor (../build.sh); wedge snapshots it
// after its init and runs each request in a fresh instance of the snapshot,
// so the Go runtime does not start per request. The work is the WAGI
// contender's (../work).
package main

import (
	"errors"
	"io"
	"net/http"
	"time"

	"wedge.dev/sdk"
	"wedgebench/work"
)

func init() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "Hello, wedge\n")
	})
	mux.HandleFunc("POST /json", func(w http.ResponseWriter, r *http.Request) {
		body, ok := readBody(w, r)
		if !ok {
			return
		}
		out, err := work.Summarize(body)
		if err != nil {
			text(w, 400, err.Error()+"\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(out)
	})
	mux.HandleFunc("GET /jwt", func(w http.ResponseWriter, r *http.Request) {
		if sub, ok := work.VerifyJWT(r.Header.Get("Authorization")); ok {
			text(w, 200, "ok "+sub+"\n")
		} else {
			text(w, 401, "invalid token\n")
		}
	})
	mux.HandleFunc("POST /image", func(w http.ResponseWriter, r *http.Request) {
		body, ok := readBody(w, r)
		if !ok {
			return
		}
		out, err := work.Thumbnail(body)
		switch {
		case errors.Is(err, work.ErrBadImage):
			text(w, 400, "bad image\n")
		case err != nil:
			text(w, 500, "encoding failed\n")
		default:
			w.Header().Set("Content-Type", "image/jpeg")
			w.Write(out)
		}
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		ms, ok := work.SleepMs(r.URL.RawQuery)
		if !ok {
			text(w, 400, "bad ms\n")
			return
		}
		time.Sleep(time.Duration(ms) * time.Millisecond)
		text(w, 200, "slept\n")
	})
	wedge.Serve(mux)
	// Once, while wedge takes the snapshot: each workload's lazily built
	// state (encoding/json's codecs, the JPEG tables) goes into it.
	wedge.Warmup(work.Warm)
}

func main() {}

func text(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, work.MaxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		text(w, 413, "body too large\n")
		return nil, false
	case err != nil:
		text(w, 400, "bad body\n")
		return nil, false
	}
	return body, true
}
