package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseStealReadsTheCPULinesEighthValue(t *testing.T) {
	stat := "cpu  24193 0 12851 391492 532 0 3877 8543 0 0\ncpu0 12000 0 6000 195000 200 0 1900 4300 0 0\nintr 1 2 3\n"
	if got, ok := parseSteal([]byte(stat)); !ok || got != 85430*time.Millisecond {
		t.Fatalf("parseSteal = %s, %v; want 1m25.43s, true", got, ok)
	}
	for name, bad := range map[string]string{
		"empty":                  "",
		"no cpu line first":      "intr 1 2 3\ncpu  1 2 3 4 5 6 7 8\n",
		"a kernel before 2.6.11": "cpu  24193 0 12851 391492 532 0 3877\n",
		"not a number":           "cpu  1 2 3 4 5 6 7 x 9\n",
		"negative":               "cpu  1 2 3 4 5 6 7 -8 9\n",
		"too large":              "cpu  1 2 3 4 5 6 7 99999999999999999999 9\n",
	} {
		if got, ok := parseSteal([]byte(bad)); ok {
			t.Errorf("%s: parseSteal(%q) = %s, true; want not ok", name, bad, got)
		}
	}
}

func FuzzParseSteal(f *testing.F) {
	f.Add([]byte("cpu  24193 0 12851 391492 532 0 3877 8543 0 0\n"))
	f.Add([]byte("cpu 1 2 3 4 5 6 7 922337203685 9"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, ok := parseSteal(b); ok && got < 0 {
			t.Fatalf("parseSteal(%q) = %s: a negative steal", b, got)
		}
	})
}

func TestTheLatencyReportShowsEachRoundsStealAndWarnsAboveTheLimit(t *testing.T) {
	run := func(name string, p99 time.Duration, steal float64) result {
		return result{name: name, qps: 18000, p50: 40 * time.Microsecond, p99: p99, cpu: time.Second, steal: steal}
	}
	o := options{load: 18000, clients: 10, outstanding: 100, duration: 5 * time.Second, rounds: 3}
	quiet := [][]result{
		{run("detour", 90*time.Microsecond, 0.4), run("detour", 95*time.Microsecond, 0.9), run("detour", 80*time.Microsecond, 0.8)},
		{run("nsd", 70*time.Microsecond, 0.5), run("nsd", 75*time.Microsecond, 1.0), run("nsd", 72*time.Microsecond, 0.6)},
	}
	var out strings.Builder
	reportLoad(&out, o, quiet)
	got := out.String()
	for _, want := range []string{"host steal % per round", "0.4 · 0.9 · 0.8", "0.5 · 1.0 · 0.6", "host steal %"} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "caution") {
		t.Errorf("a report of rounds under %.0f %% steal warns:\n%s", stealLimit, got)
	}

	noisy := [][]result{
		{run("detour", 5*time.Millisecond, 41.5), run("detour", 90*time.Microsecond, 0.4), run("detour", 6*time.Millisecond, 38)},
		{run("nsd", 4*time.Millisecond, 44.2), {name: "nsd", skipped: "nsd is not installed", steal: 90}, run("nsd", 70*time.Microsecond, 0.2)},
	}
	out.Reset()
	reportLoad(&out, o, noisy)
	want := "caution: in 3 of 5 rounds the host held this machine's runnable CPUs for more than 1 % of their time (up to 44.2 %"
	if !strings.Contains(out.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, out.String())
	}
}

func TestAKernelThatDoesNotReportStealShowsADash(t *testing.T) {
	rs := []result{{name: "detour", qps: 20000, cpu: time.Second, steal: -1}}
	var out strings.Builder
	writeTable(&out, options{duration: 5 * time.Second}, rs)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if f := strings.Fields(lines[len(lines)-1]); f[len(f)-1] != "-" {
		t.Errorf("steal column of a kernel without steal = %q, want -:\n%s", f[len(f)-1], out.String())
	}
	if w := stealWarning([][]result{rs}); w != "" {
		t.Errorf("unknown steal warns: %s", w)
	}
}

func TestTheLatencyReportSaysHowIdleCPUsWait(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"a virtual machine whose idle vCPUs halt at once",
			map[string]string{"sys/devices/system/cpu/cpuidle/current_driver": "haltpoll\n", "sys/module/haltpoll/parameters/guest_halt_poll_ns": "0\n"},
			"idle CPUs: cpuidle haltpoll, guest_halt_poll_ns 0 (an idle vCPU halts to the host at once)"},
		{"a virtual machine whose idle vCPUs poll first",
			map[string]string{"sys/devices/system/cpu/cpuidle/current_driver": "haltpoll\n", "sys/module/haltpoll/parameters/guest_halt_poll_ns": "200000\n"},
			"idle CPUs: cpuidle haltpoll, guest_halt_poll_ns 200000"},
		{"a real machine", map[string]string{"sys/devices/system/cpu/cpuidle/current_driver": "intel_idle\n"}, "idle CPUs: cpuidle intel_idle"},
		{"a kernel without cpuidle", nil, "idle CPUs: no cpuidle driver"},
	} {
		root := t.TempDir() + "/"
		for path, content := range tc.files {
			if err := os.MkdirAll(filepath.Dir(root+path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(root+path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if got := idleNote(root); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
