package cli

import "testing"

func TestByteSizeParsesAndPrintsExactly(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1000000": 1000000, "512MiB": 512 << 20, "2GiB": 2 << 30, "2 GiB": 2 << 30,
		"64KiB": 64 << 10, "1MB": 1e6, "1.5GiB": 3 << 29,
	} {
		var b byteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, int64(b), err, want)
		}
	}
	for _, in := range []string{"", "x", "-1", "12XB", "99999999999TiB"} {
		var b byteSize
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) = %d, want an error", in, int64(b))
		}
	}
	for v, want := range map[int64]string{0: "0", 64 << 20: "64MiB", 10 << 30: "10GiB", 1536 << 10: "1536KiB", 1000000: "1000000"} {
		b := byteSize(v)
		if got := b.String(); got != want {
			t.Errorf("String(%d) = %q, want %q", v, got, want)
		}
	}
}
