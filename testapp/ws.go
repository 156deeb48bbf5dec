package main

import (
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

const wsCloseReason = "server shutting down"

// wsHub tracks open WebSockets so the drain can close them all, or the
// abrupt shutdown cut them all.
type wsHub struct {
	mu     sync.Mutex
	closed bool // by closeAll or cutAll: no new connections
	cut    bool // by cutAll
	conns  map[*wsClient]struct{}
	wg     sync.WaitGroup
}

type wsClient struct {
	stop chan struct{} // closed by closeAll
	conn net.Conn      // the hijacked TCP connection, reset by cutAll
}

func newWSHub() *wsHub {
	return &wsHub{conns: map[*wsClient]struct{}{}}
}

func (h *wsHub) add(c *wsClient) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.conns[c] = struct{}{}
	h.wg.Add(1)
	return true
}

func (h *wsHub) remove(c *wsClient) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.conns[c]; ok {
		delete(h.conns, c)
		h.wg.Done()
	}
}

// isCut reports whether cutAll has run.
func (h *wsHub) isCut() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cut
}

func (h *wsHub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// closeAll asks every connection to close with 1001 and waits up to timeout
// for them to finish. It returns how many were asked and whether all finished.
func (h *wsHub) closeAll(timeout time.Duration) (int, bool) {
	h.mu.Lock()
	h.closed = true
	n := len(h.conns)
	for c := range h.conns {
		close(c.stop)
	}
	h.mu.Unlock()

	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return n, true
	case <-time.After(timeout):
		return n, false
	}
}

// cutAll resets the TCP connection of every WebSocket, without a close
// frame, and returns how many it cut. The handlers then fail to read or
// write and return, without a close frame either.
func (h *wsHub) cutAll() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	h.cut = true
	for c := range h.conns {
		resetConn(c.conn)
	}
	return len(h.conns)
}

type wsMessage struct {
	Version string `json:"version"`
	Pod     string `json:"pod"`
	Seq     int    `json:"seq"`
	Time    string `json:"time"`
}

var upgrader = websocket.Upgrader{
	HandshakeTimeout: 10 * time.Second,
	CheckOrigin:      func(*http.Request) bool { return true },
}

// handleWS sends {version, pod, seq, time} every wsInterval until the client
// goes away, the drain closes the connection with 1001 or the abrupt
// shutdown resets it.
func (a *app) handleWS(w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, http.Header{
		"X-Version": {a.cfg.Version},
		"X-Pod":     {a.cfg.Pod},
	})
	if err != nil {
		return // the upgrader has answered with an HTTP error
	}
	c := &wsClient{stop: make(chan struct{}), conn: conn.NetConn()}
	if !a.ws.add(c) {
		// Upgraded while shutting down: the drain says 1001, the abrupt
		// shutdown resets the connection like the others.
		if a.ws.isCut() {
			resetConn(c.conn)
			return
		}
		a.closeWS(conn, nil)
		_ = conn.Close()
		return
	}
	defer func() {
		_ = conn.Close()
		a.ws.remove(c)
	}()

	conn.SetReadLimit(4096)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for {
			// The default close handler answers a client's close frame.
			if _, _, err := conn.NextReader(); err != nil {
				return
			}
		}
	}()

	ticker := time.NewTicker(a.wsInterval)
	defer ticker.Stop()
	seq := 0
	send := func() error {
		seq++
		_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		return conn.WriteJSON(wsMessage{
			Version: a.cfg.Version,
			Pod:     a.cfg.Pod,
			Seq:     seq,
			Time:    time.Now().UTC().Format(time.RFC3339Nano),
		})
	}
	if send() != nil {
		return
	}
	for {
		select {
		case <-ticker.C:
			if send() != nil {
				return
			}
		case <-readDone:
			return
		case <-c.stop:
			a.closeWS(conn, readDone)
			return
		}
	}
}

// closeWS sends a close frame with 1001 and waits for the client's answer
// (when readDone is given) so the TCP connection ends cleanly.
func (a *app) closeWS(conn *websocket.Conn, readDone <-chan struct{}) {
	msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, wsCloseReason)
	if err := conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second)); err != nil {
		return
	}
	if readDone == nil {
		return
	}
	select {
	case <-readDone:
	case <-time.After(a.wsCloseWait):
	}
}
