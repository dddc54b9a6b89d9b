// The Go contender of the wedge benchmarks: one WAGI (CGI over WASI preview1)
// function implementing every route of bench/WORKLOADS.md (/hello, /json,
// /jwt, /image, /slow) with the standard library only.
//
// Build: ./build.sh (GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags=-s
// -o bench.wasm .). Serve it with wedge under exact routes (bench/wedge/go.toml)
// or on every path; the guest dispatches on X_MATCHED_ROUTE, falling back to
// SCRIPT_NAME+PATH_INFO. /jwt needs `allow_authorization = true` in the
// manifest, since wedge withholds the Authorization header from WAGI guests
// otherwise.
//
// Each request runs in a fresh instance: read the request from the CGI
// environment and stdin, write the whole CGI response to stdout in one write.
package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"
	"time"

	"wedgebench/work"
)

const maxBody = work.MaxBody

func main() {
	route := os.Getenv("X_MATCHED_ROUTE")
	switch route {
	case "/hello", "/json", "/jwt", "/image", "/slow":
	default: // e.g. served on every path ("/..."): use the request path
		route = os.Getenv("SCRIPT_NAME") + os.Getenv("PATH_INFO")
	}
	method := os.Getenv("REQUEST_METHOD")

	switch route {
	case "/hello":
		if allow(method, "GET") {
			text(200, "Hello, wedge\n")
		}
	case "/json":
		if allow(method, "POST") {
			if body, ok := readBody(); ok {
				if out, err := work.Summarize(body); err != nil {
					text(400, err.Error()+"\n")
				} else {
					respond(200, "application/json", out)
				}
			}
		}
	case "/jwt":
		if allow(method, "GET") {
			if sub, ok := work.VerifyJWT(os.Getenv("HTTP_AUTHORIZATION")); ok {
				text(200, "ok "+sub+"\n")
			} else {
				text(401, "invalid token\n")
			}
		}
	case "/image":
		if allow(method, "POST") {
			if body, ok := readBody(); ok {
				out, err := work.Thumbnail(body)
				switch {
				case errors.Is(err, work.ErrBadImage):
					text(400, "bad image\n")
				case err != nil:
					text(500, "encoding failed\n")
				default:
					respond(200, "image/jpeg", out)
				}
			}
		}
	case "/slow":
		if allow(method, "GET") {
			if ms, ok := work.SleepMs(os.Getenv("QUERY_STRING")); ok {
				time.Sleep(time.Duration(ms) * time.Millisecond)
				text(200, "slept\n")
			} else {
				text(400, "bad ms\n")
			}
		}
	default:
		text(404, "not found\n")
	}
}

// ---- CGI output ----

var reasons = map[int]string{
	200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
	405: "Method Not Allowed", 413: "Payload Too Large", 500: "Internal Server Error",
}

// header starts a CGI response: the header block up to and including the blank line.
func header(buf *bytes.Buffer, status int, contentType string, extra string) {
	buf.WriteString("Content-Type: ")
	buf.WriteString(contentType)
	buf.WriteString("\r\n")
	if status != 200 {
		buf.WriteString("Status: ")
		buf.WriteString(strconv.Itoa(status))
		buf.WriteByte(' ')
		buf.WriteString(reasons[status])
		buf.WriteString("\r\n")
	}
	buf.WriteString(extra)
	buf.WriteString("\r\n")
}

// respond writes a whole CGI response with one write.
func respond(status int, contentType string, body []byte) {
	var buf bytes.Buffer
	buf.Grow(64 + len(body))
	header(&buf, status, contentType, "")
	buf.Write(body)
	os.Stdout.Write(buf.Bytes())
}

func text(status int, body string) {
	respond(status, "text/plain", []byte(body))
}

func allow(method, want string) bool {
	if method == want {
		return true
	}
	var buf bytes.Buffer
	header(&buf, 405, "text/plain", "Allow: "+want+"\r\n")
	buf.WriteString("method not allowed\n")
	os.Stdout.Write(buf.Bytes())
	return false
}

// readBody reads the request body from stdin, sized by CONTENT_LENGTH when given.
func readBody() ([]byte, bool) {
	var body []byte
	var err error
	if n, perr := strconv.Atoi(os.Getenv("CONTENT_LENGTH")); perr == nil && n >= 0 {
		if n > maxBody {
			text(413, "body too large\n")
			return nil, false
		}
		body = make([]byte, n)
		_, err = io.ReadFull(os.Stdin, body)
	} else {
		body, err = io.ReadAll(io.LimitReader(os.Stdin, maxBody+1))
		if err == nil && len(body) > maxBody {
			text(413, "body too large\n")
			return nil, false
		}
	}
	if err != nil {
		text(400, "bad body\n")
		return nil, false
	}
	return body, true
}
