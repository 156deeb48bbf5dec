package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// config is everything the app reads from its environment.
type config struct {
	Port            string        // PORT, default 8080
	Version         string        // VERSION, default "dev"
	Pod             string        // POD_NAME, default os.Hostname()
	StartupDelay    time.Duration // STARTUP_DELAY: readiness turns true after this
	Drain           time.Duration // DRAIN, default 5s: keep serving this long after SIGTERM
	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT, default 30s: bound on waiting for in-flight requests
	FailRate        float64       // FAIL_RATE: fraction of GET / answered 500
	CrashAfter      time.Duration // CRASH_AFTER: exit 1 after this long
	IgnoreSIGTERM   bool          // IGNORE_SIGTERM=1
	NeverReady      bool          // NEVER_READY=1
	RedisAddr       string        // REDIS_ADDR: carts in Redis when set
	Shutdown        string        // SHUTDOWN: shutdownGraceful (default) or shutdownAbrupt
}

// The values of SHUTDOWN: what SIGTERM (or SIGINT) does.
const (
	shutdownGraceful = "graceful" // drain: readiness off, DRAIN, finish requests, close WebSockets with 1001
	shutdownAbrupt   = "abrupt"   // cut: close the listener and every connection at once, no close frame
)

// loadConfig reads the configuration through getenv (os.Getenv in main,
// a map in tests) and reports every invalid variable at once.
func loadConfig(getenv func(string) string) (config, error) {
	cfg := config{
		Port:            "8080",
		Version:         "dev",
		Drain:           5 * time.Second,
		ShutdownTimeout: 30 * time.Second,
		Shutdown:        shutdownGraceful,
	}
	var problems []string
	bad := func(name, value, want string) {
		problems = append(problems, fmt.Sprintf("%s=%q: %s", name, value, want))
	}

	if v := strings.TrimSpace(getenv("PORT")); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < 1 || n > 65535 {
			bad("PORT", v, "want a port number 1-65535")
		} else {
			cfg.Port = strconv.Itoa(n)
		}
	}
	if v := getenv("VERSION"); v != "" {
		cfg.Version = v
	}
	cfg.Pod = getenv("POD_NAME")
	if cfg.Pod == "" {
		if h, err := os.Hostname(); err == nil && h != "" {
			cfg.Pod = h
		} else {
			cfg.Pod = "unknown"
		}
	}

	durations := []struct {
		name string
		dst  *time.Duration
	}{
		{"STARTUP_DELAY", &cfg.StartupDelay},
		{"DRAIN", &cfg.Drain},
		{"SHUTDOWN_TIMEOUT", &cfg.ShutdownTimeout},
		{"CRASH_AFTER", &cfg.CrashAfter},
	}
	for _, d := range durations {
		v := strings.TrimSpace(getenv(d.name))
		if v == "" {
			continue
		}
		parsed, err := time.ParseDuration(v)
		if err != nil || parsed < 0 {
			bad(d.name, v, "want a non-negative Go duration such as 3s or 500ms")
			continue
		}
		*d.dst = parsed
	}

	if v := strings.TrimSpace(getenv("FAIL_RATE")); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > 1 {
			bad("FAIL_RATE", v, "want a number between 0 and 1")
		} else {
			cfg.FailRate = f
		}
	}

	flags := []struct {
		name string
		dst  *bool
	}{
		{"IGNORE_SIGTERM", &cfg.IgnoreSIGTERM},
		{"NEVER_READY", &cfg.NeverReady},
	}
	for _, f := range flags {
		v := strings.TrimSpace(getenv(f.name))
		if v == "" {
			continue
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad(f.name, v, "want 1/0 or true/false")
			continue
		}
		*f.dst = b
	}

	switch v := strings.TrimSpace(getenv("SHUTDOWN")); v {
	case "":
	case shutdownGraceful, shutdownAbrupt:
		cfg.Shutdown = v
	default:
		bad("SHUTDOWN", v, "want "+shutdownGraceful+" or "+shutdownAbrupt)
	}

	cfg.RedisAddr = strings.TrimSpace(getenv("REDIS_ADDR"))

	if len(problems) > 0 {
		return cfg, fmt.Errorf("invalid environment: %s", strings.Join(problems, "; "))
	}
	return cfg, nil
}
