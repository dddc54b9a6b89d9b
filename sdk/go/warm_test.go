package wedge

import (
	"net/textproto"
	"os"
	"os/exec"
	"runtime"
	"testing"
)

// In a process of its own (nothing else may have built the tables first):
// after the warm-up, canonicalising the lower-case header names hosts send
// allocates nothing, because textproto's common-header table already exists.
func TestWarmUpBuildsWhatRequestsWouldBuildLazily(t *testing.T) {
	if os.Getenv("WEDGE_WARM_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWarmUpBuildsWhatRequestsWouldBuildLazily$", "-test.v")
		cmd.Env = append(os.Environ(), "WEDGE_WARM_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
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
