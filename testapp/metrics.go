package main

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
)

// metrics holds the counters exposed on /metrics in the Prometheus text
// format (version 0.0.4), written by hand to keep the binary small.
type metrics struct {
	mu       sync.Mutex
	requests map[int]uint64 // by status code
	errors   uint64         // 5xx answers
}

func newMetrics() *metrics {
	return &metrics{requests: map[int]uint64{}}
}

func (m *metrics) observe(code int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests[code]++
	if code >= 500 {
		m.errors++
	}
}

func (m *metrics) write(w io.Writer, version string, ready bool, inflight int64, websockets int) {
	m.mu.Lock()
	codes := make([]int, 0, len(m.requests))
	for c := range m.requests {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	counts := make([]uint64, len(codes))
	for i, c := range codes {
		counts[i] = m.requests[c]
	}
	errors := m.errors
	m.mu.Unlock()

	v := escapeLabel(version)
	b := bufio.NewWriter(w)
	fmt.Fprintln(b, "# HELP testapp_requests_total Requests answered, by version and HTTP status code (probes and /metrics excluded).")
	fmt.Fprintln(b, "# TYPE testapp_requests_total counter")
	for i, c := range codes {
		fmt.Fprintf(b, "testapp_requests_total{version=\"%s\",code=\"%d\"} %d\n", v, c, counts[i])
	}
	fmt.Fprintln(b, "# HELP testapp_errors_total Requests answered with a 5xx status, by version.")
	fmt.Fprintln(b, "# TYPE testapp_errors_total counter")
	fmt.Fprintf(b, "testapp_errors_total{version=\"%s\"} %d\n", v, errors)
	fmt.Fprintln(b, "# HELP testapp_ready Whether /readyz answers 200.")
	fmt.Fprintln(b, "# TYPE testapp_ready gauge")
	fmt.Fprintf(b, "testapp_ready{version=\"%s\"} %d\n", v, boolInt(ready))
	fmt.Fprintln(b, "# HELP testapp_inflight_requests HTTP requests being answered, WebSockets excluded.")
	fmt.Fprintln(b, "# TYPE testapp_inflight_requests gauge")
	fmt.Fprintf(b, "testapp_inflight_requests{version=\"%s\"} %d\n", v, inflight)
	fmt.Fprintln(b, "# HELP testapp_websocket_connections Open WebSocket connections.")
	fmt.Fprintln(b, "# TYPE testapp_websocket_connections gauge")
	fmt.Fprintf(b, "testapp_websocket_connections{version=\"%s\"} %d\n", v, websockets)
	_ = b.Flush()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
