package main

import (
	"net/netip"
	"testing"

	"github.com/paypage/paypage/pkg/egress"
)

// Review of issue 13 (reproduction, fails today): the paypage
// NetworkPolicy's webhook egress rule says it is "the same rule the egress
// guard applies inside the process" (deploy/kubernetes.yaml:86-87,121-125),
// but its except list names only six ranges; "this network", the IETF and
// benchmarking blocks, documentation, 6to4 relay, multicast, reserved and
// broadcast, which egress.CheckAddr refuses, stay open to the pods on 443
// and 80, and TestKubernetesManifests checks only five private ranges
// (cmd/paypage/deploy_test.go:273).
func TestReviewEgressPolicyMatchesTheGuard(t *testing.T) {
	t.Parallel()
	np := find(t, readYAML(t, "kubernetes.yaml"), "NetworkPolicy", "paypage")
	var except []netip.Prefix
	for _, rule := range list(np, "spec", "egress") {
		if str(rule, "to", 0, "ipBlock", "cidr") == "0.0.0.0/0" {
			for _, e := range list(rule, "to", 0, "ipBlock", "except") {
				except = append(except, netip.MustParsePrefix(e.(string)))
			}
		}
	}
	for _, probe := range []string{"0.1.2.3", "192.0.0.170", "192.0.2.1", "192.88.99.1", "198.18.0.1", "198.51.100.1",
		"203.0.113.1", "224.0.0.251", "240.0.0.1", "255.255.255.255"} {
		a := netip.MustParseAddr(probe)
		if egress.CheckAddr(a) == nil {
			continue // the guard allows it: nothing to match
		}
		covered := false
		for _, p := range except {
			covered = covered || p.Contains(a)
		}
		if !covered {
			t.Errorf("the guard refuses %s, the network policy lets webhooks reach it", probe)
		}
	}
}
