package load

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// processSample is what the service's /metrics says of its process at one
// moment: CPU seconds used so far and resident memory.
type processSample struct {
	At       time.Time
	CPU      float64 // process_cpu_seconds_total
	Resident float64 // process_resident_memory_bytes
	// GoSys is what the Go runtime holds from the OS (go_memstats_sys_bytes):
	// resident memory less the pages of files it maps (bolt's database).
	GoSys float64
}

// scrape reads the process metrics from a Prometheus text endpoint.
func scrape(ctx context.Context, c *http.Client, url string) (processSample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return processSample{}, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return processSample{}, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return processSample{}, fmt.Errorf("metrics: %s answered %d", url, resp.StatusCode)
	}
	// The service read its CPU while it answered: between the request and
	// the whole answer, so At is off by at most the scrape's own time.
	at := time.Now()
	s, err := parseProcess(resp.Body)
	s.At = at
	return s, err
}

// parseProcess finds process_cpu_seconds_total and
// process_resident_memory_bytes in the text exposition format.
func parseProcess(r io.Reader) (processSample, error) {
	var s processSample
	var cpu, rss bool
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		var dst *float64
		switch name {
		case "process_cpu_seconds_total":
			dst, cpu = &s.CPU, true
		case "process_resident_memory_bytes":
			dst, rss = &s.Resident, true
		case "go_memstats_sys_bytes":
			dst = &s.GoSys
		default:
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return s, fmt.Errorf("metrics: %s: %w", name, err)
		}
		*dst = v
	}
	if err := sc.Err(); err != nil {
		return s, fmt.Errorf("metrics: %w", err)
	}
	if !cpu || !rss {
		return s, fmt.Errorf("metrics: no process_cpu_seconds_total or process_resident_memory_bytes (is it paypage's --metrics-addr?)")
	}
	return s, nil
}

// ServerUse is the service's CPU and memory over the measured time: from
// a scrape of its metrics that ends just before the measured time starts
// to one that starts as soon as it ends, so the CPU window is the measured
// one give or take the two scrapes' own time (milliseconds, against a run
// of seconds).
type ServerUse struct {
	// CPUCores is the CPU time the service used between the first and the
	// last scrape, divided by that time: 1.0 is one core busy throughout.
	CPUCores float64 `json:"cpu_cores"`
	// CPUPerOpMicros is that CPU time, in microseconds, divided by the
	// operations that ended in the measured time, successful and failed
	// together (total.ops + total.errors): a failed operation costs the
	// service too. Operations still in flight at either end are in neither
	// count, and their CPU is in the window only in part.
	CPUPerOpMicros float64 `json:"cpu_per_op_us"`
	// Resident memory: at the start, at the end, and the most seen.
	ResidentStartMB float64 `json:"resident_start_mb"`
	ResidentEndMB   float64 `json:"resident_end_mb"`
	ResidentMaxMB   float64 `json:"resident_max_mb"`
	// ResidentSlopeMBPerMin is the least-squares slope of resident memory
	// over the run: near 0 when memory is flat.
	ResidentSlopeMBPerMin float64 `json:"resident_slope_mb_per_min"`
	// GoSysMaxMB is the most the Go runtime held from the OS: resident
	// memory without the pages of a mapped file (bolt's database, which
	// the kernel may drop and read again).
	GoSysMaxMB float64 `json:"go_sys_max_mb"`
	// Samples are resident memory over the run, one per sample interval.
	Samples []MemSample `json:"samples"`
}

// MemSample is resident memory at a moment of the run.
type MemSample struct {
	Seconds    float64 `json:"s"`
	ResidentMB float64 `json:"mb"`
}

const mb = 1 << 20

// serverUse sums up samples taken from the start to the end of the
// measured time, over which ops operations ended, successful or failed.
func serverUse(samples []processSample, ops uint64) *ServerUse {
	if len(samples) < 2 {
		return nil
	}
	first, last := samples[0], samples[len(samples)-1]
	el := last.At.Sub(first.At).Seconds()
	u := &ServerUse{ResidentStartMB: first.Resident / mb, ResidentEndMB: last.Resident / mb}
	if el > 0 {
		u.CPUCores = (last.CPU - first.CPU) / el
	}
	if ops > 0 {
		u.CPUPerOpMicros = (last.CPU - first.CPU) / float64(ops) * 1e6
	}
	var sx, sy, sxx, sxy float64
	for _, s := range samples {
		x := s.At.Sub(first.At).Minutes()
		y := s.Resident / mb
		u.ResidentMaxMB = max(u.ResidentMaxMB, y)
		u.GoSysMaxMB = max(u.GoSysMaxMB, round(s.GoSys/mb, 1))
		u.Samples = append(u.Samples, MemSample{Seconds: round(x*60, 1), ResidentMB: round(y, 1)})
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	n := float64(len(samples))
	if d := n*sxx - sx*sx; d > 0 {
		u.ResidentSlopeMBPerMin = (n*sxy - sx*sy) / d
	}
	return u
}
