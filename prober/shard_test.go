package prober

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

func keys(n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("shop/pool-%d/127-1-%d-%d_8080", i%7, i/250, i%250)
	}
	return ks
}

func TestEveryWorkerAgreesOnTheOwnerWhateverOrderItListsMembersIn(t *testing.T) {
	a := []string{"p1", "p2", "p3", "p4"}
	b := []string{"p3", "p1", "p4", "p2"}
	for _, k := range keys(2000) {
		if Owner(k, a) != Owner(k, b) {
			t.Fatalf("owner of %s depends on the order of members: %s vs %s", k, Owner(k, a), Owner(k, b))
		}
	}
}

func TestNoMembersMeansNoOwner(t *testing.T) {
	if got := Owner("shop/west/a", nil); got != "" {
		t.Errorf("Owner with no members = %q, want \"\"", got)
	}
}

func TestChecksSpreadEvenlyOverTheMembers(t *testing.T) {
	for _, n := range []int{2, 3, 5, 8} {
		t.Run(fmt.Sprintf("%d members", n), func(t *testing.T) {
			var members []string
			for i := range n {
				members = append(members, fmt.Sprintf("prober-%d", i))
			}
			count := map[string]int{}
			ks := keys(12000)
			for _, k := range ks {
				count[Owner(k, members)]++
			}
			fair := float64(len(ks)) / float64(n)
			for _, m := range members {
				if dev := math.Abs(float64(count[m])-fair) / fair; dev > 0.08 {
					t.Errorf("%s owns %d checks, %.0f%% off the fair share %.0f", m, count[m], dev*100, fair)
				}
			}
		})
	}
}

func TestRemovingAMemberMovesOnlyItsChecks(t *testing.T) {
	before := []string{"p1", "p2", "p3"}
	after := []string{"p1", "p3"}
	moved := 0
	for _, k := range keys(6000) {
		was, is := Owner(k, before), Owner(k, after)
		if was != "p2" && was != is {
			t.Fatalf("%s moved from %s to %s though %s is still live", k, was, is, was)
		}
		if was == "p2" {
			moved++
			if !slices.Contains(after, is) {
				t.Fatalf("%s went to %q, not a live member", k, is)
			}
		}
	}
	if moved == 0 {
		t.Fatal("p2 owned no checks: the test proves nothing")
	}
}

func TestAddingAMemberTakesOnlyItsShareFromTheOthers(t *testing.T) {
	before := []string{"p1", "p2"}
	after := []string{"p1", "p2", "p3"}
	ks := keys(9000)
	moved := 0
	for _, k := range ks {
		was, is := Owner(k, before), Owner(k, after)
		if was != is {
			if is != "p3" {
				t.Fatalf("%s moved from %s to %s: only moves to the new member are allowed", k, was, is)
			}
			moved++
		}
	}
	if share := float64(moved) / float64(len(ks)); share < 0.28 || share > 0.39 {
		t.Errorf("the new member took %.1f%% of the checks, want about a third", share*100)
	}
}
