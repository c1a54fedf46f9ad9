package threeds_test

import (
	"strings"
	"testing"

	"github.com/paypage/paypage/pkg/threeds"
)

// FuzzDecodeCRes: the CRes comes back through the shopper's browser, so
// anyone can write it. No input panics; one that decodes names a
// transaction, and encodes back to the same CRes.
func FuzzDecodeCRes(f *testing.F) {
	f.Add(threeds.Encode(threeds.CRes{ThreeDSServerTransID: "3ds_x", ACSTransID: "acs_y", MessageType: "CRes", MessageVersion: "2.2.0", TransStatus: "Y"}))
	f.Add(threeds.Encode(map[string]any{"threeDSServerTransID": 5}))
	f.Add("eyJ0aHJlZURTU2VydmVyVHJhbnNJRCI6IngifQ==")
	f.Add("not base64!")
	f.Add(strings.Repeat("A", 5000))
	f.Fuzz(func(t *testing.T, s string) {
		c, err := threeds.DecodeCRes(s)
		if err != nil {
			return
		}
		if c.ThreeDSServerTransID == "" {
			t.Fatalf("decoded %q with no transaction", s)
		}
		again, err := threeds.DecodeCRes(threeds.Encode(c))
		if err != nil || again != c {
			t.Fatalf("round trip of %+v: %+v %v", c, again, err)
		}
	})
}
