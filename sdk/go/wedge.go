// Package wedge is the Go SDK for wedge functions: plain net/http handlers,
// CloudEvents handlers and stream functions, built as WASI reactors
// (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared) that wedge
// initialises once, snapshots, and runs in a fresh instance per request.
//
// Register the function in an init function; main is never called:
//
//	func init() {
//		wedge.Serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
//			fmt.Fprintln(w, "Hello")
//		}))
//	}
//
//	func main() {}
//
// The host ABI is wedge ABI v1, described in docs/go-sdk.md.
package wedge

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
)

// ABIVersion is the version of the host ABI this SDK speaks.
const ABIVersion = 1

var (
	handler http.Handler
	warmup  func()
)

// Serve makes h the function's handler. Call it once, from an init function.
func Serve(h http.Handler) {
	if handler != nil {
		panic("wedge: a handler is already registered; a module serves one handler (use an http.ServeMux for several routes)")
	}
	if h == nil {
		panic("wedge: Serve(nil)")
	}
	handler = h
}

// Warmup registers f to run once while wedge takes the function's snapshot,
// after every package's init functions: work done there (filling caches,
// compiling templates, touching lazily initialised tables) is done once,
// not per request. It must not depend on any request and runs without one.
func Warmup(f func()) { warmup = f }

// prepare runs once, while wedge takes the snapshot: the function's warm-up,
// then what makes every request cheaper. memoryLimit is the function's
// max_memory in bytes (0 when unknown).
func prepare(memoryLimit int64) {
	if warmup != nil {
		warmup()
	}
	// What net/http and its helpers build on first use, built once here
	// rather than in every request.
	warmSDK()
	runtime.GC()
	// An instance serves one request and is dropped: collecting garbage is
	// wasted work unless memory runs short, so collect only near the limit.
	if memoryLimit > 0 {
		debug.SetMemoryLimit(memoryLimit / 8 * 7)
		debug.SetGCPercent(-1)
	}
	cacheSpans()
}

type ctxKey int

const requestIDKey ctxKey = 0

// RequestID is the id wedge gave the invocation: it is in wedge's access
// log and error messages, and in the x-request-id response header.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// handle runs one invocation; 0 means the handler returned normally.
func handle(h host) (code int32) {
	if handler == nil {
		h.fail("no handler registered: call wedge.Serve, wedge.HandleEvent or wedge.HandleStream from an init function")
		return 1
	}
	req, err := readRequest(h)
	if err != nil {
		h.fail(err.Error())
		return 1
	}
	w := newResponse(h)
	defer func() {
		if p := recover(); p != nil {
			if a, ok := p.(abort); ok {
				h.fail(a.reason)
				code = 1
				return
			}
			if p == http.ErrAbortHandler {
				h.fail("the handler aborted the response (http.ErrAbortHandler)")
				code = 1
				return
			}
			msg := fmt.Sprintf("panic: %v", p)
			fmt.Fprintf(os.Stderr, "%s\n\n%s", msg, debug.Stack())
			h.fail(msg)
			code = 1
		}
	}()
	handler.ServeHTTP(w, req)
	w.finish()
	return 0
}

// host is what the SDK needs from wedge; wasmHost provides it.
type host interface {
	// requestHead writes the request's head record into buf and returns
	// its length; when that is more than len(buf), nothing was written.
	requestHead(buf []byte) int
	// read reads request body bytes: n > 0 bytes, 0 at the end, < 0 when
	// the body failed (too large, too slow, the client left).
	read(buf []byte) int
	// respond sends the response head record; < 0 when it was refused.
	respond(head []byte) int
	// write sends body bytes, waiting while the client is slow; < 0 when
	// the response can take no more (the client left, or the limit).
	write(p []byte) int
	// flush asks the host to send what it holds now.
	flush() int
	// fail says why the invocation failed.
	fail(msg string)
}
