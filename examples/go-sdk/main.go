// The Go SDK example: three functions in one module, net/http handlers
// registered with wedge's Go SDK (sdk/go, docs/go-sdk.md). wedge runs the
// module's init once, snapshots it, and serves every request from a fresh
// instance of the snapshot.
//
//	curl http://127.0.0.1:8080/go/hello?name=edge
//	curl -X POST http://127.0.0.1:8080/go/event -H 'ce-specversion: 1.0' \
//	  -H 'ce-id: 1' -H 'ce-source: /demo' -H 'ce-type: demo.reading' -d '21.5'
//	curl --data-binary @/etc/hostname http://127.0.0.1:8080/go/upper
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"wedge.dev/sdk"
)

// Built once, in the snapshot: every request finds it ready.
var greeting = strings.Repeat("=", 24)

func init() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /go/hello", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		if name == "" {
			name = "world"
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s\nHello, %s, from Go on wedge (request %s)\n", greeting, name, wedge.RequestID(r.Context()))
	})
	// A CloudEvents function: 204 when handled.
	mux.Handle("POST /go/event", wedge.EventHandler(func(ctx context.Context, ev wedge.Event) error {
		fmt.Fprintf(os.Stderr, "event %s from %s: %s (%s)\n", ev.Type, ev.Source, ev.Data, ev.DataContentType)
		return nil
	}))
	// A stream function: upper-cases its input as it flows.
	mux.Handle("POST /go/upper", wedge.StreamHandler(func(ctx context.Context, in io.Reader, out io.Writer) error {
		buf := make([]byte, 32<<10)
		for {
			n, err := in.Read(buf)
			if n > 0 {
				if _, werr := out.Write(bytes.ToUpper(buf[:n])); werr != nil {
					return werr
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
