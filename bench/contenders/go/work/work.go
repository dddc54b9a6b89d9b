// Package work is the work of the bench workloads (bench/WORKLOADS.md),
// shared by the Go contenders: the WAGI module (../main.go) and the Go SDK
// function (../sdk). Standard library only.
package work

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"image"
	"image/jpeg"
	"strconv"
	"strings"
	"time"
)

const (
	secret = "wedge-bench-secret"
	// MaxBody is the largest request body accepted (the photo is ~100 KB).
	MaxBody     = 16 << 20
	maxSleepMs  = 60000
	thumbW      = 320
	thumbH      = 240
	jpegQuality = 85
)

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

// Summarize turns an order into its summary (JSON, one line); an error is
// the client's fault (400).
func Summarize(body []byte) ([]byte, error) {
	var o order
	if err := json.Unmarshal(body, &o); err != nil || o.Items == nil {
		return nil, errors.New("malformed order")
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
			return nil, errors.New("amount out of range")
		}
		total := s.TotalCents + amount
		if (amount > 0 && total < s.TotalCents) || (amount < 0 && total > s.TotalCents) {
			return nil, errors.New("total out of range")
		}
		s.TotalCents = total
		s.Lines = append(s.Lines, line{Product: it.Sku, Title: it.Name, AmountCents: amount})
	}
	var buf bytes.Buffer
	buf.Grow(len(body))
	if err := json.NewEncoder(&buf).Encode(&s); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
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

// VerifyJWT returns the sub of a valid HS256 bearer token.
func VerifyJWT(authorization string) (string, bool) {
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

// ErrBadImage is the client's fault (400).
var ErrBadImage = errors.New("bad image")

// Thumbnail makes the contract's grey 320x240 JPEG of a JPEG.
func Thumbnail(body []byte) ([]byte, error) {
	img, err := jpeg.Decode(bytes.NewReader(body))
	if err != nil {
		return nil, ErrBadImage
	}
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	if sw == 0 || sh == 0 {
		return nil, ErrBadImage
	}
	grey := toGrey(img)
	small := &image.Gray{
		Pix:    resizeBilinear(grey, sw, sh, thumbW, thumbH),
		Stride: thumbW,
		Rect:   image.Rect(0, 0, thumbW, thumbH),
	}
	var buf bytes.Buffer
	buf.Grow(64 << 10)
	if err := jpeg.Encode(&buf, small, &jpeg.Options{Quality: jpegQuality}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
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

// ---- warm-up ----

// Warm runs each workload once on a small input. The Go SDK contender does
// it while its snapshot is taken (wedge.Warmup), so that what these paths
// build on first use (encoding/json's codecs for the order types, the
// JPEG tables) is in the snapshot rather than built in every request.
func Warm() {
	Summarize([]byte(`{"order_id":"w","customer":{"name":"w","country":"w"},"items":[{"sku":"w","name":"w","unit_cents":1,"qty":1}]}`))
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	signed := enc(`{"alg":"HS256","typ":"JWT"}`) + "." + enc(`{"sub":"warm","exp":4102444800}`)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(signed))
	VerifyJWT("Bearer " + signed + "." + enc(string(mac.Sum(nil))))
	var photo bytes.Buffer
	if jpeg.Encode(&photo, image.NewGray(image.Rect(0, 0, 64, 48)), nil) == nil {
		Thumbnail(photo.Bytes())
	}
}

// ---- /slow ----

// SleepMs reads the `ms` parameter of /slow.
func SleepMs(query string) (int, bool) {
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
