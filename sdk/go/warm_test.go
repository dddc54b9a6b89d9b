package wedge

import (
	"net/textproto"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"testing"
	"unsafe"
)

// In a process of its own (nothing else may have built the tables first):
// after the warm-up, canonicalising the lower-case header names hosts send
// allocates nothing, because textproto's common-header table already exists.
func TestWarmUpBuildsWhatRequestsWouldBuildLazily(t *testing.T) {
	if !inChild(t) {
		return
	}
	prepare(0)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, k := range []string{"content-type", "accept-encoding", "user-agent", "x-forwarded-for"} {
		if got := textproto.CanonicalMIMEHeaderKey(k); got == k {
			t.Fatalf("%q not canonicalised", k)
		}
	}
	runtime.ReadMemStats(&after)
	if n := after.Mallocs - before.Mallocs; n != 0 {
		t.Fatalf("canonicalising common header names after the warm-up allocated %d times", n)
	}
}

// In a process of its own: after the warm-up, allocating an object of any
// small size class takes no new span from the heap (the allocator already
// holds one of each class), so a request never writes the heap's span
// bookkeeping.
func TestWarmUpLeavesASpanOfEverySizeClassCached(t *testing.T) {
	if !inChild(t) {
		return
	}
	// One processor, as under wasip1 (each has its own cache of spans).
	// Sizes whose classes hold more than one object per span, with and
	// without pointers (a class of one object is full once cached).
	runtime.GOMAXPROCS(1)
	sizes := []int{8, 24, 48, 112, 512, 1024, 4096, 9472, 19072, 20480, 27264}
	keep := make([]any, 0, 2*len(sizes))
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
	}
	inSpans := func() uint64 {
		metrics.Read(samples)
		return samples[0].Value.Uint64() + samples[1].Value.Uint64()
	}
	inSpans() // metrics.Read builds its tables on first use
	prepare(1 << 30)
	before := inSpans()
	for _, n := range sizes {
		keep = append(keep, make([]byte, n), make([]unsafe.Pointer, n/8))
	}
	if after := inSpans(); after != before {
		t.Fatalf("allocating one object of %d size classes took %d bytes of new spans", 2*len(sizes), after-before)
	}
	runtime.KeepAlive(keep)
}

// inChild reports whether this is the test's own process; if not, it runs
// the test again in a fresh one (whose runtime nothing else has warmed) and
// fails when that fails.
func inChild(t *testing.T) bool {
	t.Helper()
	if os.Getenv("WEDGE_WARM_CHILD") != "" {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v")
	cmd.Env = append(os.Environ(), "WEDGE_WARM_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	return false
}
