package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serveTestApp starts the app with env on a loopback port and serves it until the
// test ends; it returns the app, its log, the address and serve's result channel.
func serveTestApp(t *testing.T, env map[string]string, wsInterval time.Duration) (*app, *syncBuffer, string, chan error) {
	t.Helper()
	logs := &syncBuffer{}
	a := newApp(testConfig(t, env), logs)
	a.wsInterval = wsInterval
	a.start()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- a.serve(ln) }()
	return a, logs, ln.Addr().String(), served
}

func testConfig(t *testing.T, env map[string]string) config {
	t.Helper()
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// newTestApp starts an app on a loopback httptest server.
func newTestApp(t *testing.T, env map[string]string) (*app, *httptest.Server, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	a := newApp(testConfig(t, env), logs)
	a.start()
	srv := httptest.NewServer(a.handler())
	t.Cleanup(srv.Close)
	return a, srv, logs
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp, string(body)
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestVersionJSONAndHeaders(t *testing.T) {
	_, srv, _ := newTestApp(t, map[string]string{"VERSION": "v2", "POD_NAME": "web-abc"})

	resp, body := get(t, nil, srv.URL+"/")
	if resp.StatusCode != 200 {
		t.Fatalf("GET / = %d, want 200", resp.StatusCode)
	}
	var v versionResponse
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("GET / body %q: %v", body, err)
	}
	if v.Version != "v2" || v.Pod != "web-abc" {
		t.Errorf("GET / = %+v, want version v2 pod web-abc", v)
	}
	if _, err := time.Parse(time.RFC3339Nano, v.Time); err != nil {
		t.Errorf("time %q: %v", v.Time, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}

	for _, path := range []string{"/", "/healthz", "/readyz", "/metrics", "/nope"} {
		resp, _ := get(t, nil, srv.URL+path)
		if got := resp.Header.Get("X-Version"); got != "v2" {
			t.Errorf("%s: X-Version = %q, want v2", path, got)
		}
		if got := resp.Header.Get("X-Pod"); got != "web-abc" {
			t.Errorf("%s: X-Pod = %q, want web-abc", path, got)
		}
	}
	if resp, _ := get(t, nil, srv.URL+"/nope"); resp.StatusCode != 404 {
		t.Errorf("GET /nope = %d, want 404", resp.StatusCode)
	}
}

func TestDefaults(t *testing.T) {
	cfg := testConfig(t, nil)
	host, _ := os.Hostname()
	if cfg.Version != "dev" || cfg.Pod != host || cfg.Port != "8080" || cfg.Drain != 5*time.Second {
		t.Errorf("defaults = %+v, want version dev, pod %q, port 8080, drain 5s", cfg, host)
	}
	cfg = testConfig(t, map[string]string{"PORT": "18080", "IGNORE_SIGTERM": "1", "NEVER_READY": "true"})
	if cfg.Port != "18080" || !cfg.IgnoreSIGTERM || !cfg.NeverReady {
		t.Errorf("config = %+v", cfg)
	}
}

func TestInvalidEnvironment(t *testing.T) {
	env := map[string]string{"STARTUP_DELAY": "soon", "FAIL_RATE": "2", "PORT": "http", "NEVER_READY": "maybe"}
	_, err := loadConfig(func(k string) string { return env[k] })
	if err == nil {
		t.Fatal("want an error")
	}
	for k := range env {
		if !strings.Contains(err.Error(), k) {
			t.Errorf("error %q does not name %s", err, k)
		}
	}
}

func TestReadinessAfterStartupDelay(t *testing.T) {
	const delay = 300 * time.Millisecond
	begin := time.Now()
	_, srv, logs := newTestApp(t, map[string]string{"STARTUP_DELAY": delay.String()})

	resp, body := get(t, nil, srv.URL+"/readyz")
	if resp.StatusCode != 503 || !strings.Contains(body, "starting") {
		t.Fatalf("/readyz before delay = %d %q, want 503 starting", resp.StatusCode, body)
	}
	if resp, _ := get(t, nil, srv.URL+"/healthz"); resp.StatusCode != 200 {
		t.Fatalf("/healthz = %d, want 200 while starting", resp.StatusCode)
	}
	waitFor(t, 3*time.Second, "readiness", func() bool {
		resp, _ := get(t, nil, srv.URL+"/readyz")
		return resp.StatusCode == 200
	})
	if elapsed := time.Since(begin); elapsed < delay {
		t.Errorf("ready after %s, before STARTUP_DELAY %s", elapsed, delay)
	}
	if !strings.Contains(logs.String(), "ready: startup delay") {
		t.Errorf("logs do not mention readiness:\n%s", logs)
	}
}

func TestNeverReady(t *testing.T) {
	_, srv, _ := newTestApp(t, map[string]string{"NEVER_READY": "1"})
	if resp, _ := get(t, nil, srv.URL+"/readyz"); resp.StatusCode != 503 {
		t.Errorf("/readyz = %d, want 503", resp.StatusCode)
	}
	if resp, _ := get(t, nil, srv.URL+"/"); resp.StatusCode != 200 {
		t.Errorf("GET / = %d, want 200", resp.StatusCode)
	}
}

func TestFailRateAndMetrics(t *testing.T) {
	_, srv, _ := newTestApp(t, map[string]string{"VERSION": "v3", "FAIL_RATE": "1"})
	for i := 0; i < 5; i++ {
		resp, body := get(t, nil, srv.URL+"/")
		if resp.StatusCode != 500 {
			t.Fatalf("GET / = %d, want 500 with FAIL_RATE=1", resp.StatusCode)
		}
		if !strings.Contains(body, `"version":"v3"`) {
			t.Errorf("500 body %q lacks the version", body)
		}
	}
	get(t, nil, srv.URL+"/healthz")
	get(t, nil, srv.URL+"/sleep?ms=0")

	resp, body := get(t, nil, srv.URL+"/metrics")
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Errorf("/metrics Content-Type = %q", resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`testapp_requests_total{version="v3",code="500"} 5`,
		`testapp_requests_total{version="v3",code="200"} 1`,
		`testapp_errors_total{version="v3"} 5`,
		`testapp_ready{version="v3"} 1`,
		"# TYPE testapp_requests_total counter",
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
}

func TestZeroFailRate(t *testing.T) {
	_, srv, _ := newTestApp(t, map[string]string{"FAIL_RATE": "0"})
	for i := 0; i < 20; i++ {
		if resp, _ := get(t, nil, srv.URL+"/"); resp.StatusCode != 200 {
			t.Fatalf("GET / = %d, want 200", resp.StatusCode)
		}
	}
}

func TestCartInMemory(t *testing.T) {
	_, srv, _ := newTestApp(t, map[string]string{"VERSION": "v1", "POD_NAME": "p1"})
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}

	post := func(item string) cartResponse {
		t.Helper()
		resp, err := client.Post(srv.URL+"/cart?item="+item, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST /cart = %d", resp.StatusCode)
		}
		var c cartResponse
		if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}

	first := post("apple")
	if first.Session == "" || len(first.Items) != 1 || first.Items[0] != "apple" {
		t.Fatalf("first POST = %+v", first)
	}
	cookies := jar.Cookies(mustURL(t, srv.URL))
	if len(cookies) != 1 || cookies[0].Name != "zdr_session" || cookies[0].Value != first.Session {
		t.Fatalf("cookies = %v, want zdr_session=%s", cookies, first.Session)
	}
	post("pear")

	resp, body := get(t, client, srv.URL+"/cart")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /cart = %d", resp.StatusCode)
	}
	var cart cartResponse
	if err := json.Unmarshal([]byte(body), &cart); err != nil {
		t.Fatal(err)
	}
	if cart.Session != first.Session || strings.Join(cart.Items, ",") != "apple,pear" || cart.Version != "v1" || cart.Pod != "p1" {
		t.Errorf("GET /cart = %+v, want session %s items apple,pear", cart, first.Session)
	}
	if len(resp.Header.Values("Set-Cookie")) != 0 {
		t.Errorf("cookie set again for a known session: %v", resp.Header.Values("Set-Cookie"))
	}

	// Another client has its own, empty cart.
	resp, body = get(t, nil, srv.URL+"/cart")
	if !strings.Contains(body, `"items":[]`) || strings.Contains(body, first.Session) {
		t.Errorf("new session cart = %s", body)
	}
	if !strings.Contains(resp.Header.Get("Set-Cookie"), "zdr_session=") {
		t.Errorf("no session cookie set: %v", resp.Header)
	}

	resp, err := client.Post(srv.URL+"/cart", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("POST /cart without item = %d, want 400", resp.StatusCode)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestSleep(t *testing.T) {
	_, srv, _ := newTestApp(t, nil)
	begin := time.Now()
	resp, body := get(t, nil, srv.URL+"/sleep?ms=100")
	if resp.StatusCode != 200 || !strings.Contains(body, `"slept_ms":100`) {
		t.Errorf("/sleep = %d %s", resp.StatusCode, body)
	}
	if time.Since(begin) < 100*time.Millisecond {
		t.Errorf("/sleep?ms=100 answered after %s", time.Since(begin))
	}
	for _, bad := range []string{"", "x", "-1", "100000000"} {
		if resp, _ := get(t, nil, srv.URL+"/sleep?ms="+bad); resp.StatusCode != 400 {
			t.Errorf("/sleep?ms=%s = %d, want 400", bad, resp.StatusCode)
		}
	}
}

func TestWebSocketMessages(t *testing.T) {
	a, srv, _ := newTestApp(t, map[string]string{"VERSION": "v4", "POD_NAME": "p4"})
	a.wsInterval = 20 * time.Millisecond
	conn, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if resp.Header.Get("X-Version") != "v4" {
		t.Errorf("handshake X-Version = %q", resp.Header.Get("X-Version"))
	}
	for want := 1; want <= 3; want++ {
		var m wsMessage
		if err := conn.ReadJSON(&m); err != nil {
			t.Fatal(err)
		}
		if m.Seq != want || m.Version != "v4" || m.Pod != "p4" {
			t.Errorf("message %d = %+v", want, m)
		}
	}
	_ = conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	waitFor(t, 2*time.Second, "the server to forget the connection", func() bool { return a.ws.count() == 0 })
}

// TestDrainSequence runs the SIGTERM path: readiness off at once, normal
// service (new connections included) during DRAIN, in-flight requests
// finished, WebSockets closed with 1001, listener closed.
func TestDrainSequence(t *testing.T) {
	const drain = 400 * time.Millisecond
	a, logs, addr, served := serveTestApp(t, map[string]string{"DRAIN": drain.String(), "VERSION": "v1", "POD_NAME": "p1"}, 50*time.Millisecond)
	base := "http://" + addr
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	if resp, _ := get(t, fresh, base+"/readyz"); resp.StatusCode != 200 {
		t.Fatalf("/readyz = %d before drain", resp.StatusCode)
	}

	conn, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	type wsResult struct {
		messages []wsMessage
		err      error
		at       time.Time
	}
	wsDone := make(chan wsResult, 1)
	go func() {
		var r wsResult
		for {
			var m wsMessage
			if r.err = conn.ReadJSON(&m); r.err != nil {
				r.at = time.Now()
				wsDone <- r
				return
			}
			r.messages = append(r.messages, m)
		}
	}()
	time.Sleep(60 * time.Millisecond)

	drainStart := time.Now()
	drained := make(chan error, 1)
	go func() { drained <- a.drain("SIGTERM") }()

	waitFor(t, 100*time.Millisecond, "readiness to turn off", func() bool {
		resp, _ := get(t, fresh, base+"/readyz")
		return resp.StatusCode == 503
	})
	if resp, _ := get(t, fresh, base+"/healthz"); resp.StatusCode != 200 {
		t.Errorf("/healthz = %d during drain, want 200", resp.StatusCode)
	}

	// A request that starts in the window and ends after it.
	type sleepResult struct {
		code int
		err  error
		at   time.Time
	}
	slept := make(chan sleepResult, 1)
	go func() {
		resp, err := fresh.Get(base + "/sleep?ms=550")
		r := sleepResult{err: err, at: time.Now()}
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			r.code = resp.StatusCode
		}
		slept <- r
	}()

	// New connections are still served normally, and told to close.
	for time.Since(drainStart) < drain-100*time.Millisecond {
		resp, body := get(t, fresh, base+"/")
		if resp.StatusCode != 200 || !strings.Contains(body, `"version":"v1"`) {
			t.Fatalf("GET / during drain = %d %s", resp.StatusCode, body)
		}
		if !resp.Close {
			t.Errorf("GET / during drain: no Connection: close")
		}
		time.Sleep(50 * time.Millisecond)
	}

	sr := <-slept
	if sr.err != nil || sr.code != 200 {
		t.Fatalf("in-flight /sleep during shutdown: code %d, err %v", sr.code, sr.err)
	}
	if err := <-drained; err != nil {
		t.Fatalf("drain: %v", err)
	}
	if elapsed := time.Since(drainStart); elapsed < drain {
		t.Errorf("drain finished after %s, before DRAIN %s", elapsed, drain)
	}

	wr := <-wsDone
	var ce *websocket.CloseError
	if !errors.As(wr.err, &ce) || ce.Code != websocket.CloseGoingAway || ce.Text != wsCloseReason {
		t.Fatalf("websocket ended with %v, want close 1001 %q", wr.err, wsCloseReason)
	}
	if wr.at.Before(sr.at) {
		t.Errorf("websocket closed at %s, before the in-flight request finished at %s", wr.at, sr.at)
	}
	during := 0
	for i, m := range wr.messages {
		if m.Seq != i+1 {
			t.Fatalf("message %d has seq %d", i, m.Seq)
		}
		during++
	}
	if want := int(drain / a.wsInterval / 2); during < want {
		t.Errorf("got %d websocket messages, want at least %d (messages keep flowing while draining)", during, want)
	}

	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}
	if _, err := fresh.Get(base + "/"); err == nil {
		t.Errorf("GET / after drain succeeded, want connection refused")
	}
	out := logs.String()
	for _, want := range []string{
		"drain: SIGTERM received, readiness off, serving for 400ms",
		"drain: window over, no longer accepting connections",
		"drain: in-flight requests finished",
		"drain: closed 1 websocket(s) with 1001 (going away)",
		"drain: done",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q:\n%s", want, out)
		}
	}
	if err := a.drain("SIGTERM"); err == nil {
		t.Errorf("second drain: want an error")
	}
}

func TestShutdownConfig(t *testing.T) {
	if cfg := testConfig(t, nil); cfg.Shutdown != shutdownGraceful {
		t.Errorf("default SHUTDOWN = %q, want graceful", cfg.Shutdown)
	}
	for _, v := range []string{"graceful", "abrupt", " abrupt "} {
		if cfg := testConfig(t, map[string]string{"SHUTDOWN": v}); cfg.Shutdown != strings.TrimSpace(v) {
			t.Errorf("SHUTDOWN=%q gives %q", v, cfg.Shutdown)
		}
	}
	for _, v := range []string{"hard", "Abrupt", "1", "graceful,abrupt"} {
		_, err := loadConfig(func(k string) string { return map[string]string{"SHUTDOWN": v}[k] })
		if err == nil {
			t.Errorf("SHUTDOWN=%q accepted", v)
			continue
		}
		for _, want := range []string{"SHUTDOWN", "graceful", "abrupt"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("SHUTDOWN=%q: error %q does not name %s", v, err, want)
			}
		}
	}
}

// rawGet sends a GET on an open connection without reading the answer.
func rawGet(t *testing.T, c net.Conn, path string) {
	t.Helper()
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: testapp\r\n\r\n"); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// readCut reads c until it fails and wants a reset within 1.5s (well before
// /sleep?ms=2000 could answer) and no byte at all.
func readCut(t *testing.T, what string, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
	got, err := io.ReadAll(c)
	if len(got) > 0 {
		t.Errorf("%s: got %q after the abrupt shutdown, want nothing", what, got)
	}
	// SO_LINGER 0: a reset, not a FIN (which would read as a clean EOF).
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("%s: read ended with %v, want a connection reset", what, err)
	}
}

// wantWSCut fails unless err, the end of a WebSocket read, is a cut TCP
// connection: a reset, or an EOF (which gorilla reports as 1006, a code no
// peer sends), not a close frame and not a timeout.
func wantWSCut(t *testing.T, what string, err error) {
	t.Helper()
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case err == nil:
		t.Errorf("%s: read a message, want the TCP connection cut", what)
	case errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure:
		t.Errorf("%s: ended with a close frame (%v), want the TCP connection cut", what, err)
	case errors.As(err, &ne) && ne.Timeout():
		t.Errorf("%s: read timed out (%v), want the TCP connection cut", what, err)
	}
}

// TestAbruptShutdown runs the SIGTERM path with SHUTDOWN=abrupt: no drain
// (DRAIN is ignored), every connection reset at once (idle kept-alive, with a
// request in flight, WebSocket without a close frame), new connections refused.
func TestAbruptShutdown(t *testing.T) {
	a, logs, addr, served := serveTestApp(t, map[string]string{"SHUTDOWN": "abrupt", "DRAIN": "10s", "VERSION": "v1"}, 20*time.Millisecond)
	dial := func() net.Conn {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	// A kept-alive connection, idle after one answered request.
	idle := dial()
	rawGet(t, idle, "/")
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("GET / = %d, close %t: want 200 on a kept-alive connection", resp.StatusCode, resp.Close)
	}

	// A connection with a request in flight.
	busy := dial()
	rawGet(t, busy, "/sleep?ms=2000")

	// A WebSocket that is receiving messages.
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	var first wsMessage
	if err := ws.ReadJSON(&first); err != nil {
		t.Fatal(err)
	}
	closeFrame := make(chan []byte, 1)
	ws.SetCloseHandler(func(code int, text string) error {
		closeFrame <- websocket.FormatCloseMessage(code, text)
		return nil
	})
	wsDone := make(chan error, 1)
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				wsDone <- err
				return
			}
		}
	}()

	waitFor(t, 2*time.Second, "one request in flight, 2 connections and 1 websocket tracked", func() bool {
		return a.inflight.Load() == 1 && a.conns.count() == 2 && a.ws.count() == 1
	})

	begin := time.Now()
	if err := a.shutdown("SIGTERM"); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if elapsed := time.Since(begin); elapsed > 500*time.Millisecond {
		t.Errorf("abrupt shutdown took %s, want no drain (DRAIN=10s)", elapsed)
	}

	readCut(t, "idle kept-alive connection", idle)
	readCut(t, "in-flight /sleep?ms=2000", busy)

	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("new connection after the abrupt shutdown accepted, want refused")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("new connection after the abrupt shutdown: %v, want connection refused", err)
	}

	select {
	case err := <-wsDone:
		wantWSCut(t, "websocket", err)
	case <-time.After(2 * time.Second):
		t.Fatal("websocket still open 2s after the abrupt shutdown")
	}
	select {
	case f := <-closeFrame:
		t.Errorf("websocket received a close frame %q", f)
	default:
	}

	select {
	case err := <-served:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("serve still running 2s after the abrupt shutdown")
	}
	out := logs.String()
	if want := "shutdown: SIGTERM received, abrupt: closed listener, 2 connection(s) and 1 websocket(s) without a close frame\n"; !strings.Contains(out, want) {
		t.Errorf("logs lack %q:\n%s", want, out)
	}
	if strings.Contains(out, "drain:") {
		t.Errorf("abrupt shutdown logged a drain:\n%s", out)
	}
	waitFor(t, 2*time.Second, "the websocket handler to return", func() bool { return a.ws.count() == 0 })
	if err := a.shutdown("SIGTERM"); err == nil {
		t.Errorf("second shutdown: want an error")
	}
	if err := a.drain("SIGTERM"); err == nil {
		t.Errorf("drain after the abrupt shutdown: want an error")
	}
}

// TestAbruptShutdownLateConnections covers the connections that race the
// cut: one accepted after it, and a WebSocket upgraded after it.
func TestAbruptShutdownLateConnections(t *testing.T) {
	a := newApp(testConfig(t, map[string]string{"SHUTDOWN": "abrupt"}), io.Discard)
	if err := a.abort("SIGTERM"); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pair := func() (client, server net.Conn) {
		t.Helper()
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close() })
		server, err = ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { server.Close() })
		return client, server
	}

	client, server := pair()
	if a.conns.add(server) {
		t.Errorf("connection accepted after the cut was tracked, want it reset")
	}
	readCut(t, "connection accepted after the cut", client)

	// A WebSocket upgraded after the cut: handleWS is served on a
	// loopback server of its own, as the app's is closed.
	srv := httptest.NewServer(a.handler())
	defer srv.Close()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	closeFrame := false
	ws.SetCloseHandler(func(int, string) error { closeFrame = true; return nil })
	_ = ws.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, _, err = ws.ReadMessage()
	wantWSCut(t, "websocket upgraded after the cut", err)
	if closeFrame {
		t.Errorf("websocket upgraded after the cut received a close frame")
	}
}

// TestCartInRedis checks that two pods sharing a Redis see the same cart.
// It runs when redis-server is installed and listens on loopback only.
func TestCartInRedis(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	ln.Close()
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--protected-mode", "yes")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	waitFor(t, 5*time.Second, "redis-server", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	_, podA, _ := newTestApp(t, map[string]string{"POD_NAME": "a", "REDIS_ADDR": addr})
	_, podB, _ := newTestApp(t, map[string]string{"POD_NAME": "b", "REDIS_ADDR": addr})
	resp, err := http.Post(podA.URL+"/cart?item=book", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var session string
	for _, c := range resp.Cookies() {
		if c.Name == "zdr_session" {
			session = c.Value
		}
	}
	if resp.StatusCode != 200 || session == "" {
		t.Fatalf("POST /cart on pod a = %d, session %q", resp.StatusCode, session)
	}

	req, _ := http.NewRequest("GET", podB.URL+"/cart", nil)
	req.AddCookie(&http.Cookie{Name: "zdr_session", Value: session})
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var cart cartResponse
	if err := json.NewDecoder(resp.Body).Decode(&cart); err != nil {
		t.Fatal(err)
	}
	if cart.Pod != "b" || cart.Session != session || strings.Join(cart.Items, ",") != "book" {
		t.Errorf("GET /cart on pod b = %+v, want the cart made on pod a", cart)
	}
}

func TestReadinessSwitch(t *testing.T) {
	_, srv, _ := newTestApp(t, nil)
	post := func(q string) int {
		resp, err := http.Post(srv.URL+"/admin/readiness?ready="+q, "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	readyz := func() int {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := readyz(); got != 200 {
		t.Fatalf("readyz before switch = %d", got)
	}
	if post("false") != 200 || readyz() != 503 {
		t.Fatal("readiness did not switch off")
	}
	if post("true") != 200 || readyz() != 200 {
		t.Fatal("readiness did not switch back on")
	}
	if post("maybe") != 400 {
		t.Fatal("a bad value was accepted")
	}
}
