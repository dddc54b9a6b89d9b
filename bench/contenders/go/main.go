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
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"image"
	"image/jpeg"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

const (
	secret      = "wedge-bench-secret"
	maxBody     = 16 << 20 // largest request body accepted (the photo is ~100 KB)
	maxSleepMs  = 60000
	thumbW      = 320
	thumbH      = 240
	jpegQuality = 85
)

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
				orderSummary(body)
			}
		}
	case "/jwt":
		if allow(method, "GET") {
			if sub, ok := verifyJWT(os.Getenv("HTTP_AUTHORIZATION")); ok {
				text(200, "ok "+sub+"\n")
			} else {
				text(401, "invalid token\n")
			}
		}
	case "/image":
		if allow(method, "POST") {
			if body, ok := readBody(); ok {
				thumbnail(body)
			}
		}
	case "/slow":
		if allow(method, "GET") {
			if ms, ok := sleepMs(os.Getenv("QUERY_STRING")); ok {
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

// ---- /json ----

type order struct {
	OrderID  string   `json:"order_id"`
	Customer customer `json:"customer"`
	Items    []item   `json:"items"`
}

type customer struct {
	Name    string `json:"name"`
	Country string `json:"country"`
}

type item struct {
	Sku       string `json:"sku"`
	Name      string `json:"name"`
	UnitCents int64  `json:"unit_cents"`
	Qty       int64  `json:"qty"`
}

type summary struct {
	ID         string `json:"id"`
	Customer   string `json:"customer"`
	Country    string `json:"country"`
	Count      int    `json:"count"`
	TotalCents int64  `json:"total_cents"`
	Lines      []line `json:"lines"`
}

type line struct {
	Product     string `json:"product"`
	Title       string `json:"title"`
	AmountCents int64  `json:"amount_cents"`
}

func orderSummary(body []byte) {
	var o order
	if err := json.Unmarshal(body, &o); err != nil || o.Items == nil {
		text(400, "malformed order\n")
		return
	}
	s := summary{
		ID:       o.OrderID,
		Customer: o.Customer.Name,
		Country:  o.Customer.Country,
		Count:    len(o.Items),
		Lines:    make([]line, 0, len(o.Items)),
	}
	for i := range o.Items {
		it := &o.Items[i]
		amount, ok := mul64(it.UnitCents, it.Qty)
		if !ok {
			text(400, "amount out of range\n")
			return
		}
		total := s.TotalCents + amount
		if (amount > 0 && total < s.TotalCents) || (amount < 0 && total > s.TotalCents) {
			text(400, "total out of range\n")
			return
		}
		s.TotalCents = total
		s.Lines = append(s.Lines, line{Product: it.Sku, Title: it.Name, AmountCents: amount})
	}
	var buf bytes.Buffer
	buf.Grow(64 + len(body))
	header(&buf, 200, "application/json", "")
	if err := json.NewEncoder(&buf).Encode(&s); err != nil {
		text(500, "encoding failed\n")
		return
	}
	os.Stdout.Write(buf.Bytes())
}

// mul64 is a*b, and false when it overflows int64.
func mul64(a, b int64) (int64, bool) {
	if a == 0 || b == 0 {
		return 0, true
	}
	p := a * b
	if p/b != a || (a == -1 && b == -1<<63) || (b == -1 && a == -1<<63) {
		return 0, false
	}
	return p, true
}

// ---- /jwt ----

var b64 = base64.RawURLEncoding.Strict()

type jwtHeader struct {
	Alg string `json:"alg"`
}

type jwtClaims struct {
	Sub *string `json:"sub"`
	Exp any     `json:"exp"`
}

// verifyJWT returns the sub of a valid HS256 bearer token.
func verifyJWT(authorization string) (string, bool) {
	scheme, token, found := strings.Cut(authorization, " ")
	if !found || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	dot1 := strings.IndexByte(token, '.')
	dot2 := strings.LastIndexByte(token, '.')
	if dot1 < 0 || dot1 == dot2 || strings.IndexByte(token[dot1+1:dot2], '.') >= 0 {
		return "", false // not exactly three parts
	}
	head64, claims64, sig64 := token[:dot1], token[dot1+1:dot2], token[dot2+1:]

	head, err := b64.DecodeString(head64)
	if err != nil {
		return "", false
	}
	var h jwtHeader
	if json.Unmarshal(head, &h) != nil || h.Alg != "HS256" {
		return "", false
	}

	sig, err := b64.DecodeString(sig64)
	if err != nil {
		return "", false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(token[:dot2]))     // header "." payload, as sent
	if !hmac.Equal(mac.Sum(nil), sig) { // constant time
		return "", false
	}

	claimsJSON, err := b64.DecodeString(claims64)
	if err != nil {
		return "", false
	}
	var c jwtClaims
	if json.Unmarshal(claimsJSON, &c) != nil || c.Sub == nil {
		return "", false
	}
	if exp, ok := c.Exp.(float64); ok {
		now := float64(time.Now().UnixNano()) / 1e9
		if exp <= now {
			return "", false
		}
	}
	return *c.Sub, true
}

// ---- /image ----

func thumbnail(body []byte) {
	img, err := jpeg.Decode(bytes.NewReader(body))
	if err != nil {
		text(400, "bad image\n")
		return
	}
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	if sw == 0 || sh == 0 {
		text(400, "bad image\n")
		return
	}
	grey := toGrey(img)
	small := &image.Gray{
		Pix:    resizeBilinear(grey, sw, sh, thumbW, thumbH),
		Stride: thumbW,
		Rect:   image.Rect(0, 0, thumbW, thumbH),
	}
	var buf bytes.Buffer
	buf.Grow(64 << 10)
	header(&buf, 200, "image/jpeg", "")
	if err := jpeg.Encode(&buf, small, &jpeg.Options{Quality: jpegQuality}); err != nil {
		text(500, "encoding failed\n")
		return
	}
	os.Stdout.Write(buf.Bytes())
}

// greyOf is the contract's grey level of an RGB pixel.
func greyOf(r, g, b uint32) uint8 {
	return uint8((299*r + 587*g + 114*b + 500) / 1000)
}

// toGrey converts the decoded image to one byte per pixel, rows packed.
func toGrey(img image.Image) []byte {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	out := make([]byte, w*h)
	switch m := img.(type) {
	case *image.YCbCr:
		// Chroma index shifts per subsampling ratio (as image.YCbCr.COffset).
		var hs, vs uint
		switch m.SubsampleRatio {
		case image.YCbCrSubsampleRatio422:
			hs = 1
		case image.YCbCrSubsampleRatio420:
			hs, vs = 1, 1
		case image.YCbCrSubsampleRatio440:
			vs = 1
		case image.YCbCrSubsampleRatio411:
			hs = 2
		case image.YCbCrSubsampleRatio410:
			hs, vs = 2, 1
		}
		minX, minY := b.Min.X, b.Min.Y
		for y := 0; y < h; y++ {
			yrow := m.Y[(y)*m.YStride : y*m.YStride+w]
			crow := ((y+minY)>>vs - minY>>vs) * m.CStride
			cbrow, crrow := m.Cb[crow:], m.Cr[crow:]
			o := out[y*w : y*w+w]
			for x := range o {
				ci := (x+minX)>>hs - minX>>hs
				r, g, bl := ycbcrToRGB(yrow[x], cbrow[ci], crrow[ci])
				o[x] = greyOf(uint32(r), uint32(g), uint32(bl))
			}
		}
	case *image.Gray:
		// R = G = B = Y, so the formula gives Y back.
		for y := 0; y < h; y++ {
			copy(out[y*w:y*w+w], m.Pix[y*m.Stride:])
		}
	default: // CMYK and anything else: the generic (slow) path
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				r, g, bl, _ := img.At(b.Min.X+x, b.Min.Y+y).RGBA()
				out[y*w+x] = greyOf(r>>8, g>>8, bl>>8)
			}
		}
	}
	return out
}

// ycbcrToRGB is image/color.YCbCrToRGB (JFIF's conversion), inlined by hand.
func ycbcrToRGB(y, cb, cr uint8) (uint8, uint8, uint8) {
	yy1 := int32(y) * 0x10101
	cb1 := int32(cb) - 128
	cr1 := int32(cr) - 128

	r := yy1 + 91881*cr1
	if uint32(r)&0xff000000 == 0 {
		r >>= 16
	} else {
		r = ^(r >> 31)
	}
	g := yy1 - 22554*cb1 - 46802*cr1
	if uint32(g)&0xff000000 == 0 {
		g >>= 16
	} else {
		g = ^(g >> 31)
	}
	b := yy1 + 116130*cb1
	if uint32(b)&0xff000000 == 0 {
		b >>= 16
	} else {
		b = ^(b >> 31)
	}
	return uint8(r), uint8(g), uint8(b)
}

type tap struct {
	i0, i1 int
	f      float32
}

// sampleAt gives the two source indices around output index d and the weight
// of the second: src = (d + 0.5) * scale - 0.5, clamped to the edges.
func sampleAt(d int, scale float32, n int) tap {
	s := (float32(d)+0.5)*scale - 0.5
	if s < 0 {
		s = 0
	}
	if hi := float32(n - 1); s > hi {
		s = hi
	}
	i0 := int(s)
	i1 := i0 + 1
	if i1 > n-1 {
		i1 = n - 1
	}
	return tap{i0, i1, s - float32(i0)}
}

// resizeBilinear resizes an 8-bit single-channel image, pixel centres aligned.
func resizeBilinear(src []byte, sw, sh, dw, dh int) []byte {
	out := make([]byte, dw*dh)
	cols := make([]tap, dw)
	for x := range cols {
		cols[x] = sampleAt(x, float32(sw)/float32(dw), sw)
	}
	for y := 0; y < dh; y++ {
		t := sampleAt(y, float32(sh)/float32(dh), sh)
		r0, r1 := src[t.i0*sw:t.i0*sw+sw], src[t.i1*sw:t.i1*sw+sw]
		row := out[y*dw : y*dw+dw]
		for x, c := range cols {
			a0, a1 := float32(r0[c.i0]), float32(r0[c.i1])
			b0, b1 := float32(r1[c.i0]), float32(r1[c.i1])
			top := a0 + (a1-a0)*c.f
			bottom := b0 + (b1-b0)*c.f
			v := top + (bottom-top)*t.f + 0.5
			if v >= 255 {
				row[x] = 255
			} else if v > 0 {
				row[x] = uint8(v)
			} else {
				row[x] = 0
			}
		}
	}
	return out
}

// ---- /slow ----

func sleepMs(query string) (int, bool) {
	for _, kv := range strings.Split(query, "&") {
		if v, ok := strings.CutPrefix(kv, "ms="); ok {
			ms, err := strconv.Atoi(v)
			if err != nil || ms < 0 || ms > maxSleepMs {
				return 0, false
			}
			return ms, true
		}
	}
	return 0, false
}
