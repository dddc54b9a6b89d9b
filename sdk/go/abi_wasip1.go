//go:build wasip1

package wedge

import "unsafe"

// The host functions of wedge ABI v1 (docs/go-sdk.md). Pointers are offsets
// into this module's memory; the host copies, never keeps them.

//go:wasmimport wedge_v1 request_head
func hostRequestHead(ptr unsafe.Pointer, capacity uint32) uint32

//go:wasmimport wedge_v1 body_read
func hostBodyRead(ptr unsafe.Pointer, capacity uint32) int32

//go:wasmimport wedge_v1 response_head
func hostResponseHead(ptr unsafe.Pointer, length uint32) int32

//go:wasmimport wedge_v1 body_write
func hostBodyWrite(ptr unsafe.Pointer, length uint32) int32

//go:wasmimport wedge_v1 flush
func hostFlush() int32

//go:wasmimport wedge_v1 fail
func hostFail(ptr unsafe.Pointer, length uint32)

//go:wasmimport wedge_v1 memory_limit
func hostMemoryLimit() int64

// wasmHost is the host wedge provides through the imports above.
type wasmHost struct{}

func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 && cap(b) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.SliceData(b))
}

func (wasmHost) requestHead(buf []byte) int {
	return int(hostRequestHead(ptr(buf), uint32(len(buf))))
}

func (wasmHost) read(buf []byte) int {
	return int(hostBodyRead(ptr(buf), uint32(len(buf))))
}

func (wasmHost) respond(head []byte) int {
	return int(hostResponseHead(ptr(head), uint32(len(head))))
}

func (wasmHost) write(p []byte) int {
	return int(hostBodyWrite(ptr(p), uint32(len(p))))
}

func (wasmHost) flush() int { return int(hostFlush()) }

func (wasmHost) fail(msg string) {
	b := []byte(msg)
	hostFail(ptr(b), uint32(len(b)))
}

// wedgeHandle is called once per invocation, in a fresh instance.
//
//go:wasmexport wedge_handle_v1
func wedgeHandle() int32 { return handle(wasmHost{}) }

// wedgeWarmup is called once while wedge takes the snapshot, after the
// package initialisers, when the function registered a warm-up.
//
//go:wasmexport wedge_warmup_v1
func wedgeWarmup() { prepare(hostMemoryLimit()) }
