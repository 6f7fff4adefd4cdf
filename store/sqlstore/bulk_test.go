package sqlstore

import (
	"fmt"
	"testing"

	"github.com/dirsyncd/dirsyncd/directory"
)

func TestProvCacheBounded(t *testing.T) {
	c := &provCache{m: map[string][]directory.Provenance{}}
	want := []directory.Provenance{{Kind: directory.ProvRule, Ref: "r1"}}
	c.put("a", want)
	if p, ok := c.get([]byte("a")); !ok || len(p) != 1 || p[0] != want[0] {
		t.Fatalf("get(a) = %v, %v", p, ok)
	}
	if _, ok := c.get([]byte("b")); ok {
		t.Fatal("get(b) found a text never put")
	}
	for i := range provCacheMax + 10 {
		c.put(fmt.Sprint(i), want)
	}
	if n := len(c.m); n > provCacheMax {
		t.Fatalf("%d entries, more than %d", n, provCacheMax)
	}
}
