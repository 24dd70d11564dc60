package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// parseLevels reads a comma-separated list of levels of concurrency.
func parseLevels(s string) (map[int]bool, error) {
	at := map[int]bool{}
	for _, f := range strings.Split(s, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 {
			return nil, fmt.Errorf("%q is not a level of concurrency", f)
		}
		at[c] = true
	}
	return at, nil
}

// goProfiles takes Go CPU profiles of one measurement window: spire-server's
// through its net/http/pprof endpoint (base, profiling_port) for the whole
// seconds of dur, and this process's (the driver: the simulated agents)
// with runtime/pprof, unless -cpuprofile already profiles it. The files
// are dir/<name>-spire-server.pprof and dir/<name>-driver.pprof; stop
// returns the top of each (flat and cumulative).
func goProfiles(dir, name, base string, dur time.Duration) (stop func() map[string]string) {
	secs := max(int(dur/time.Second), 1)
	serverFile := filepath.Join(dir, name+"-spire-server.pprof")
	serverDone := make(chan error, 1)
	go func() { serverDone <- fetchProfile(base+"profile?seconds="+strconv.Itoa(secs), serverFile, dur) }()

	driverFile := filepath.Join(dir, name+"-driver.pprof")
	f, err := os.Create(driverFile)
	driverErr := err
	if err == nil {
		if driverErr = pprof.StartCPUProfile(f); driverErr != nil {
			f.Close()
		}
	}
	return func() map[string]string {
		out := map[string]string{}
		if driverErr == nil {
			pprof.StopCPUProfile()
			f.Close()
			exe, _ := os.Executable()
			out["driver"] = goProfileTop(exe, driverFile)
		} else {
			out["driver"] = fmt.Sprintf("no driver profile: %v", driverErr)
		}
		if err := <-serverDone; err != nil {
			out["spire-server"] = fmt.Sprintf("no spire-server profile: %v", err)
		} else {
			out["spire-server"] = goProfileTop("", serverFile)
		}
		return out
	}
}

// fetchProfile saves the CPU profile the server takes over the window.
func fetchProfile(url, path string, dur time.Duration) error {
	c := &http.Client{Timeout: dur + 30*time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s %s", url, resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// goProfileTop renders the top 20 functions of a CPU profile, flat and
// cumulative (binary: the executable, "" when the profile carries its
// symbols, as the server's does).
func goProfileTop(binary, profile string) string {
	var b strings.Builder
	for _, mode := range []string{"-top", "-top -cum"} {
		args := append([]string{"tool", "pprof"}, strings.Fields(mode)...)
		args = append(args, "-nodecount=20")
		if binary != "" {
			args = append(args, binary)
		}
		args = append(args, profile)
		out, err := exec.Command("go", args...).CombinedOutput()
		fmt.Fprintf(&b, "$ go %s\n", strings.Join(args, " "))
		if err != nil {
			fmt.Fprintf(&b, "failed: %v\n", err)
		}
		b.Write(out)
	}
	return b.String()
}
