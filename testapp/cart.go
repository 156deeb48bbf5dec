package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	sessionCookie = "zdr_session"
	sessionTTL    = 24 * time.Hour
	maxItemLen    = 256
)

// cartStore keeps one list of items per session.
type cartStore interface {
	Add(ctx context.Context, session, item string) ([]string, error)
	Items(ctx context.Context, session string) ([]string, error)
	Close()
}

type memoryCarts struct {
	mu    sync.Mutex
	carts map[string][]string
}

func newMemoryCarts() *memoryCarts {
	return &memoryCarts{carts: map[string][]string{}}
}

func (m *memoryCarts) Add(_ context.Context, session, item string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.carts[session] = append(m.carts[session], item)
	return append([]string(nil), m.carts[session]...), nil
}

func (m *memoryCarts) Items(_ context.Context, session string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.carts[session]...), nil
}

func (m *memoryCarts) Close() {}

// redisCarts keeps each cart as the Redis list cart:<session>.
type redisCarts struct {
	client *redis.Client
}

func newRedisCarts(addr string) *redisCarts {
	return &redisCarts{client: redis.NewClient(&redis.Options{
		Addr:         addr,
		DialTimeout:  2 * time.Second,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
		MaxRetries:   2,
	})}
}

func cartKey(session string) string { return "cart:" + session }

func (r *redisCarts) Add(ctx context.Context, session, item string) ([]string, error) {
	key := cartKey(session)
	pipe := r.client.TxPipeline()
	pipe.RPush(ctx, key, item)
	pipe.Expire(ctx, key, sessionTTL)
	items := pipe.LRange(ctx, key, 0, -1)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	return items.Val(), nil
}

func (r *redisCarts) Items(ctx context.Context, session string) ([]string, error) {
	return r.client.LRange(ctx, cartKey(session), 0, -1).Result()
}

func (r *redisCarts) Close() { _ = r.client.Close() }

type cartResponse struct {
	Session string   `json:"session"`
	Items   []string `json:"items"`
	Version string   `json:"version"`
	Pod     string   `json:"pod"`
}

func (a *app) handleCart(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead, http.MethodPost) {
		return
	}
	item := r.URL.Query().Get("item")
	if r.Method == http.MethodPost && (item == "" || len(item) > maxItemLen) {
		a.fail(w, http.StatusBadRequest, fmt.Sprintf("want item=X, 1 to %d bytes", maxItemLen))
		return
	}

	session := ""
	if c, err := r.Cookie(sessionCookie); err == nil && validSession(c.Value) {
		session = c.Value
	} else {
		session = newSessionID()
		http.SetCookie(w, &http.Cookie{
			Name:     sessionCookie,
			Value:    session,
			Path:     "/",
			MaxAge:   int(sessionTTL.Seconds()),
			HttpOnly: true,
			SameSite: http.SameSiteLaxMode,
		})
	}

	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	var items []string
	var err error
	if r.Method == http.MethodPost {
		items, err = a.carts.Add(ctx, session, item)
	} else {
		items, err = a.carts.Items(ctx, session)
	}
	if err != nil {
		a.fail(w, http.StatusServiceUnavailable, "cart store: "+err.Error())
		return
	}
	if items == nil {
		items = []string{}
	}
	writeJSON(w, http.StatusOK, cartResponse{Session: session, Items: items, Version: a.cfg.Version, Pod: a.cfg.Pod})
}

func newSessionID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// validSession accepts the ids this app hands out and any similar token
// (letters, digits, '-', '_', up to 128 characters).
func validSession(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
