// Command testapp is the HTTP server zdr's tests roll out: it reports its
// version and pod, drains on SIGTERM (or, with SHUTDOWN=abrupt, cuts every
// connection at once), streams over WebSocket, keeps session carts and
// injects faults on request. See README.md for the environment.
package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	cfg, err := loadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(2)
	}
	a := newApp(cfg, os.Stdout)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	ln, err := net.Listen("tcp", ":"+cfg.Port)
	if err != nil {
		a.log.printf("start: %v", err)
		os.Exit(1)
	}
	a.start()
	if cfg.CrashAfter > 0 {
		time.AfterFunc(cfg.CrashAfter, func() {
			a.log.printf("crash: CRASH_AFTER=%s elapsed, exiting 1", cfg.CrashAfter)
			os.Exit(1)
		})
	}
	go func() {
		if err := a.serve(ln); err != nil {
			a.log.printf("serve: %v", err)
			os.Exit(1)
		}
	}()

	var sig os.Signal
	for sig = range sigs {
		if sig == syscall.SIGTERM && cfg.IgnoreSIGTERM {
			a.log.printf("drain: SIGTERM received and ignored (IGNORE_SIGTERM)")
			continue
		}
		break
	}
	go func() {
		for s := range sigs {
			a.log.printf("drain: %s received again, already draining", signalName(s))
		}
	}()
	_ = a.shutdown(signalName(sig))
	os.Exit(0)
}

func signalName(s os.Signal) string {
	switch s {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	}
	return s.String()
}
