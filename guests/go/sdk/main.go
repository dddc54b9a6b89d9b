// The Go SDK test guest: one route per behaviour the tests check
// (crates/cli/tests/all/go_sdk.rs).
package main

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"wedge.dev/sdk"
)

// Set by init, so it is in the snapshot; every request must see it as it was.
var (
	started = time.Now()
	counter int
	inits   int
)

func init() {
	inits++
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "Hello, wedge\n")
	})
	// What the function sees of its request and of its configuration.
	mux.HandleFunc("/whoami/{name}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "method=%s\npath=%s\nquery=%s\nname=%s\nheader=%s\nhost=%s\nremote=%t\nid=%s\nenv=%s\ninits=%d\ntls=%t\n",
			r.Method, r.URL.Path, r.URL.RawQuery, r.PathValue("name"), r.Header.Get("X-Test"), r.Host,
			r.RemoteAddr != "", wedge.RequestID(r.Context()), os.Getenv("GREETING"), inits, r.TLS != nil)
	})
	// A global the request changes: a fresh instance always answers 1.
	mux.HandleFunc("/counter", func(w http.ResponseWriter, r *http.Request) {
		counter++
		fmt.Fprintf(w, "%d\n", counter)
	})
	// Nanoseconds since init, on the monotonic clock: never negative, and
	// growing from one request to the next.
	mux.HandleFunc("/clock", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d\n", time.Since(started).Nanoseconds())
	})
	mux.HandleFunc("/random", func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 16)
		crand.Read(b)
		fmt.Fprintf(w, "crypto=%s\nmath=%d\n", hex.EncodeToString(b), rand.Int64())
	})
	// Echoes the body as it arrives: a streaming upload and download.
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		if _, err := io.Copy(w, r.Body); err != nil {
			fmt.Fprintln(os.Stderr, "echo:", err)
		}
	})
	// N bytes of output.
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		chunk := []byte(strings.Repeat("x", 64<<10))
		for n > 0 {
			k := min(n, len(chunk))
			if _, err := w.Write(chunk[:k]); err != nil {
				fmt.Fprintln(os.Stderr, "bytes:", err)
				return
			}
			n -= k
		}
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		io.WriteString(w, "slept\n")
	})
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) {
		var m map[string]int
		m["boom"]++
	})
	mux.HandleFunc("/deadlock", func(w http.ResponseWriter, r *http.Request) {
		select {}
	})
	mux.HandleFunc("/spin", func(w http.ResponseWriter, r *http.Request) {
		for {
			counter++
		}
	})
	mux.HandleFunc("/grow", func(w http.ResponseWriter, r *http.Request) {
		var keep [][]byte
		for {
			keep = append(keep, make([]byte, 1<<20))
		}
	})
	mux.HandleFunc("/leak", func(w http.ResponseWriter, r *http.Request) {
		go func() {
			for {
				counter++
				time.Sleep(time.Millisecond)
			}
		}()
		io.WriteString(w, "leaked a goroutine\n")
	})
	mux.HandleFunc("/stderr", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(os.Stderr, "a line on stderr")
		fmt.Println("a line on stdout")
		io.WriteString(w, "logged\n")
	})
	// CloudEvents over HTTP on /event; the MQTT trigger delivers to "/".
	// The type or the data asks for a failure.
	events := wedge.EventHandler(func(ctx context.Context, ev wedge.Event) error {
		fmt.Fprintf(os.Stderr, "event id=%s source=%s type=%s subject=%s data=%s\n", ev.ID, ev.Source, ev.Type, ev.Subject, ev.Data)
		switch {
		case ev.Type == "test.fail" || string(ev.Data) == "fail":
			return errors.New("asked to fail")
		case ev.Type == "test.reject" || string(ev.Data) == "reject":
			return wedge.Permanent(errors.New("asked to reject"))
		}
		return nil
	})
	mux.Handle("/event", events)
	mux.Handle("POST /{$}", events)
	// Upper-cases a stream; "!" in the input fails it mid-stream.
	mux.Handle("/upper", wedge.StreamHandler(func(ctx context.Context, in io.Reader, out io.Writer) error {
		buf := make([]byte, 16<<10)
		for {
			n, err := in.Read(buf)
			if n > 0 {
				chunk := buf[:n]
				if i := strings.IndexByte(string(chunk), '!'); i >= 0 {
					out.Write([]byte(strings.ToUpper(string(chunk[:i]))))
					return errors.New("found a '!'")
				}
				if _, err := out.Write([]byte(strings.ToUpper(string(chunk)))); err != nil {
					return err
				}
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	}))
	wedge.Serve(mux)
}

func main() {}
