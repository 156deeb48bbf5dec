package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const (
	maxSleep  = 10 * time.Minute
	timestamp = "2006-01-02T15:04:05.000Z07:00"
)

// logger writes timestamped lines; safe for concurrent use.
type logger struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *logger) printf(format string, args ...any) {
	line := time.Now().UTC().Format(timestamp) + " " + fmt.Sprintf(format, args...) + "\n"
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = io.WriteString(l.w, line)
}

type app struct {
	cfg   config
	log   *logger
	carts cartStore
	stats *metrics
	ws    *wsHub
	conns *connSet
	srv   *http.Server

	startupDone atomic.Bool
	stopping    atomic.Bool // a shutdown (drain or abort) has begun
	draining    atomic.Bool
	notReady    atomic.Bool
	inflight    atomic.Int64

	// wsInterval is the period of WebSocket messages; wsCloseWait bounds the
	// wait for a client's answer to our close frame.
	wsInterval  time.Duration
	wsCloseWait time.Duration
}

func newApp(cfg config, out io.Writer) *app {
	a := &app{
		cfg:         cfg,
		log:         &logger{w: out},
		stats:       newMetrics(),
		ws:          newWSHub(),
		conns:       newConnSet(),
		wsInterval:  time.Second,
		wsCloseWait: 2 * time.Second,
	}
	if cfg.RedisAddr != "" {
		a.carts = newRedisCarts(cfg.RedisAddr)
	} else {
		a.carts = newMemoryCarts()
	}
	a.srv = &http.Server{
		Handler:           a.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       90 * time.Second,
		ConnState:         a.conns.track,
	}
	return a
}

// start begins the startup delay after which the app reports ready.
func (a *app) start() {
	store := "memory"
	if a.cfg.RedisAddr != "" {
		store = "redis " + a.cfg.RedisAddr
	}
	a.log.printf("start: version=%s pod=%s port=%s startup_delay=%s shutdown=%s drain=%s fail_rate=%g carts=%s",
		a.cfg.Version, a.cfg.Pod, a.cfg.Port, a.cfg.StartupDelay, a.cfg.Shutdown, a.cfg.Drain, a.cfg.FailRate, store)
	if a.cfg.NeverReady {
		a.log.printf("start: NEVER_READY set, /readyz will always answer 503")
	}
	if a.cfg.StartupDelay <= 0 {
		a.startupDone.Store(true)
		return
	}
	time.AfterFunc(a.cfg.StartupDelay, func() {
		a.startupDone.Store(true)
		if ready, _ := a.readiness(); ready {
			a.log.printf("ready: startup delay of %s elapsed", a.cfg.StartupDelay)
		}
	})
}

// serve answers HTTP on ln until the server is shut down.
func (a *app) serve(ln net.Listener) error {
	err := a.srv.Serve(&trackedListener{Listener: ln, conns: a.conns})
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// shutdown runs the shutdown SHUTDOWN selects; main calls it on SIGTERM
// (unless ignored) or SIGINT.
func (a *app) shutdown(reason string) error {
	if a.cfg.Shutdown == shutdownAbrupt {
		return a.abort(reason)
	}
	return a.drain(reason)
}

// drain is the graceful shutdown sequence: readiness off at once, normal
// service for cfg.Drain, then stop accepting and finish in-flight requests,
// then close every WebSocket with 1001 (going away).
func (a *app) drain(reason string) error {
	if !a.stopping.CompareAndSwap(false, true) {
		return errors.New("already shutting down")
	}
	a.draining.Store(true)
	begin := time.Now()
	a.log.printf("drain: %s received, readiness off, serving for %s", reason, a.cfg.Drain)
	time.Sleep(a.cfg.Drain)

	a.log.printf("drain: window over, no longer accepting connections, %d request(s) in flight, %d websocket(s) open",
		a.inflight.Load(), a.ws.count())
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	err := a.srv.Shutdown(ctx)
	if err != nil {
		a.log.printf("drain: in-flight requests not finished after %s (%v), closing them", a.cfg.ShutdownTimeout, err)
		_ = a.srv.Close()
	} else {
		a.log.printf("drain: in-flight requests finished")
	}

	n, all := a.ws.closeAll(a.wsCloseWait + time.Second)
	if all {
		a.log.printf("drain: closed %d websocket(s) with 1001 (going away)", n)
	} else {
		a.log.printf("drain: sent 1001 (going away) to %d websocket(s), some did not finish closing", n)
	}
	a.carts.Close()
	a.log.printf("drain: done after %s, exiting", time.Since(begin).Round(time.Millisecond))
	return err
}

// abort is the abrupt shutdown (SHUTDOWN=abrupt), the negative control of a
// zero-downtime test: no drain, no http.Server.Shutdown, nothing answered
// any more. Every HTTP connection, idle or with a request in flight, and
// every WebSocket is reset at once (SO_LINGER 0: the peer reads ECONNRESET,
// a WebSocket gets no close frame), then the listener closes.
func (a *app) abort(reason string) error {
	if !a.stopping.CompareAndSwap(false, true) {
		return errors.New("already shutting down")
	}
	a.conns.cutAll()
	nws := a.ws.cutAll()
	// Closes the listener (connections still in its backlog are reset by
	// the kernel) and makes Serve return; the connections are already gone.
	err := a.srv.Close()
	a.log.printf("shutdown: %s received, abrupt: closed listener, %d connection(s) and %d websocket(s) without a close frame",
		reason, a.conns.resetCount(), nws)
	a.carts.Close()
	return err
}

// resetConn closes c with SO_LINGER 0, so the peer gets a TCP RST
// (ECONNRESET) instead of a FIN, and unsent data is dropped.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// connSet holds the live HTTP connections so that abort can reset every one
// of them. trackedListener adds each accepted connection before the server
// sees it; http.Server.ConnState removes it when it closes or is hijacked
// (WebSockets, which the wsHub tracks).
type connSet struct {
	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	reset int
}

func newConnSet() *connSet {
	return &connSet{conns: map[net.Conn]struct{}{}}
}

// add tracks c; after cutAll it resets c instead and reports false.
func (s *connSet) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut {
		resetConn(c)
		s.reset++
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// track is the http.Server.ConnState hook.
func (s *connSet) track(c net.Conn, state http.ConnState) {
	if state != http.StateHijacked && state != http.StateClosed {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

func (s *connSet) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// cutAll resets every tracked connection, and from now on every newly
// accepted one.
func (s *connSet) cutAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cut = true
	for c := range s.conns {
		resetConn(c)
		s.reset++
		delete(s.conns, c)
	}
}

// resetCount is how many connections cutAll and add have reset.
func (s *connSet) resetCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reset
}

// trackedListener adds every accepted connection to conns before handing it
// to the server, so that none escapes a cut; one accepted after the cut is
// reset and not handed over.
type trackedListener struct {
	net.Listener
	conns *connSet
}

func (l *trackedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || l.conns.add(c) {
			return c, err
		}
	}
}

// readiness reports whether /readyz answers 200, and why not.
func (a *app) readiness() (bool, string) {
	switch {
	case a.cfg.NeverReady:
		return false, "never ready (NEVER_READY)"
	case a.draining.Load():
		return false, "draining"
	case a.notReady.Load():
		return false, "switched off (POST /admin/readiness?ready=false)"
	case !a.startupDone.Load():
		return false, "starting"
	}
	return true, "ready"
}

func (a *app) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", a.handleRoot)
	mux.HandleFunc("/healthz", a.handleHealthz)
	mux.HandleFunc("/readyz", a.handleReadyz)
	mux.HandleFunc("/metrics", a.handleMetrics)
	mux.HandleFunc("/cart", a.handleCart)
	mux.HandleFunc("/sleep", a.handleSleep)
	mux.HandleFunc("/ws", a.handleWS)
	mux.HandleFunc("/admin/readiness", a.handleReadinessSwitch)

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Version", a.cfg.Version)
		h.Set("X-Pod", a.cfg.Pod)
		if a.draining.Load() {
			// Clients with a kept-alive connection open a new one, which the
			// Service routes to a pod that is still ready.
			h.Set("Connection", "close")
		}
		switch r.URL.Path {
		case "/healthz", "/readyz", "/metrics":
			mux.ServeHTTP(w, r)
			return
		case "/ws":
		default:
			a.inflight.Add(1)
			defer a.inflight.Add(-1)
		}
		rec := &statusRecorder{ResponseWriter: w}
		mux.ServeHTTP(rec, r)
		a.stats.observe(rec.code())
	})
}

type versionResponse struct {
	Version string `json:"version"`
	Pod     string `json:"pod"`
	Time    string `json:"time"`
}

type errorResponse struct {
	Error   string `json:"error"`
	Version string `json:"version"`
	Pod     string `json:"pod"`
}

func (a *app) fail(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorResponse{Error: msg, Version: a.cfg.Version, Pod: a.cfg.Pod})
}

func (a *app) handleRoot(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		a.fail(w, http.StatusNotFound, "not found")
		return
	}
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	if a.cfg.FailRate > 0 && rand.Float64() < a.cfg.FailRate {
		a.fail(w, http.StatusInternalServerError, "injected failure (FAIL_RATE)")
		return
	}
	writeJSON(w, http.StatusOK, versionResponse{
		Version: a.cfg.Version,
		Pod:     a.cfg.Pod,
		Time:    time.Now().UTC().Format(time.RFC3339Nano),
	})
}

func (a *app) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeText(w, http.StatusOK, "ok\n")
}

func (a *app) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if ready, why := a.readiness(); !ready {
		writeText(w, http.StatusServiceUnavailable, "not ready: "+why+"\n")
		return
	}
	writeText(w, http.StatusOK, "ready\n")
}

func (a *app) handleMetrics(w http.ResponseWriter, r *http.Request) {
	ready, _ := a.readiness()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	a.stats.write(w, a.cfg.Version, ready, a.inflight.Load(), a.ws.count())
}

type sleepResponse struct {
	SleptMS int64  `json:"slept_ms"`
	Version string `json:"version"`
	Pod     string `json:"pod"`
}

func (a *app) handleSleep(w http.ResponseWriter, r *http.Request) {
	ms, err := strconv.ParseInt(r.URL.Query().Get("ms"), 10, 64)
	if err != nil || ms < 0 || time.Duration(ms)*time.Millisecond > maxSleep {
		a.fail(w, http.StatusBadRequest, fmt.Sprintf("want ms=N with 0 <= N <= %d", maxSleep.Milliseconds()))
		return
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return
	}
	writeJSON(w, http.StatusOK, sleepResponse{SleptMS: ms, Version: a.cfg.Version, Pod: a.cfg.Pod})
}

func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	allow := ""
	for i, m := range methods {
		if i > 0 {
			allow += ", "
		}
		allow += m
	}
	w.Header().Set("Allow", allow)
	writeText(w, http.StatusMethodNotAllowed, "method not allowed\n")
	return false
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeText(w, http.StatusInternalServerError, "encoding response: "+err.Error()+"\n")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}

func writeText(w http.ResponseWriter, code int, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(s)))
	w.WriteHeader(code)
	_, _ = io.WriteString(w, s)
}

// statusRecorder remembers the status code written through it and keeps the
// optional interfaces of the wrapped writer reachable (hijacking for
// WebSockets, flushing).
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := s.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("response writer does not support hijacking")
	}
	conn, rw, err := h.Hijack()
	if err == nil && s.status == 0 {
		s.status = http.StatusSwitchingProtocols
	}
	return conn, rw, err
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) code() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}

// handleReadinessSwitch turns readiness off or on while the app keeps serving
// (POST /admin/readiness?ready=false|true): a pod that stops being ready at run time.
func (a *app) handleReadinessSwitch(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeText(w, http.StatusMethodNotAllowed, "POST /admin/readiness?ready=true|false\n")
		return
	}
	switch r.URL.Query().Get("ready") {
	case "false":
		a.notReady.Store(true)
	case "true":
		a.notReady.Store(false)
	default:
		writeText(w, http.StatusBadRequest, "ready must be true or false\n")
		return
	}
	ready, why := a.readiness()
	a.log.printf("readiness: switched, ready=%t (%s)", ready, why)
	writeText(w, http.StatusOK, fmt.Sprintf("ready=%t\n", ready))
}
