//go:build e2e

package spirelab

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// labBin is where make builds the plugins, the CLI and SPIRE.
var labBin = func() string {
	if b := os.Getenv("CCNP_BIN"); b != "" {
		return b
	}
	return "../../.bin"
}()

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// countLines counts the lines of a lab log that contain every part.
func countLines(path string, parts ...string) int {
	b, _ := os.ReadFile(path)
	n := 0
	for _, l := range bytes.Split(b, []byte("\n")) {
		ok := true
		for _, p := range parts {
			if !bytes.Contains(l, []byte(p)) {
				ok = false
				break
			}
		}
		if ok {
			n++
		}
	}
	return n
}

// TestHACheckpoints: two spire-servers of one trust domain on one
// PostgreSQL datastore with a shared UpstreamAuthority "disk" CA (SPIRE's HA
// setup) and the same ccnp checkpoint key. One agent attests to the first
// (full replay, checkpoint issued), then re-attests to the second and back
// to the first: each accepts the other's checkpoint (incremental
// attestation, no fallback), and both see the agent in the shared
// datastore.
func TestHACheckpoints(t *testing.T) {
	if _, err := PostgresBinDir(); err != nil {
		t.Skipf("scale-out test needs PostgreSQL: %v", err)
	}
	lab, err := New(t.TempDir(), labBin)
	if err != nil {
		t.Skipf("needs the built binaries (make build spire): %v", err)
	}
	lab.Progress = logWriter{t}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	t.Cleanup(cancel)
	t.Cleanup(func() {
		lab.Close()
		if t.Failed() {
			for _, name := range []string{"server-a", "server-b", "agent", "postgres"} {
				if b, err := os.ReadFile(filepath.Join(lab.Dir, name+".log")); err == nil {
					t.Logf("---- %s.log (tail) ----\n%s", name, lastLines(string(b), 30))
				}
			}
		}
	})

	pg, err := lab.StartPostgres(ctx, "spire")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	sim, err := lab.InitSim(ctx, "sim")
	if err != nil {
		t.Fatal(err)
	}
	upCert, upKey, err := lab.WriteUpstreamCA()
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(lab.Dir, "checkpoint.key")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := func(name string) HAServerConfig {
		return HAServerConfig{Name: name, SimRoot: filepath.Join(sim.Dir, "root.pem"), PCSURL: sim.PCSURL,
			ConnString: pg.ConnString("spire"), UpstreamCert: upCert, UpstreamKey: upKey,
			CheckpointKeyFile: key, AgentTTL: 30 * time.Second}
	}
	a, err := lab.StartHAServer(ctx, cfg("server-a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := lab.StartHAServer(ctx, cfg("server-b"))
	if err != nil {
		t.Fatal(err)
	}
	logA, logB := filepath.Join(lab.Dir, "server-a.log"), filepath.Join(lab.Dir, "server-b.log")

	agent, err := lab.StartAgent(ctx, a, AgentConfig{TEE: "sim", SimDir: sim.Dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countLines(logA, "result=accepted", "incremental=false"); n != 1 {
		t.Fatalf("%d full attestations on server-a, want 1", n)
	}
	if _, err := os.Stat(filepath.Join(lab.Dir, "agent", "checkpoint")); err != nil {
		t.Fatalf("the agent kept no checkpoint: %v", err)
	}
	ids, err := b.Agents(ctx)
	if err != nil || len(ids) != 1 {
		t.Fatalf("server-b sees agents %v (%v): the datastore is not shared", ids, err)
	}

	// waitIncremental waits for the next re-attestation (agent SVID
	// rotation, about half of agent_ttl) on the server whose log is path.
	waitIncremental := func(path string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for countLines(path, "result=accepted", "incremental=true") == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no incremental re-attestation in %s", filepath.Base(path))
			}
			time.Sleep(time.Second)
		}
	}
	for _, step := range []struct {
		srv *Server
		log string
	}{{b, logB}, {a, logA}} {
		agent.Stop(10 * time.Second)
		if agent, err = lab.StartAgent(ctx, step.srv, AgentConfig{TEE: "sim", SimDir: sim.Dir}); err != nil {
			t.Fatal(err)
		}
		waitIncremental(step.log)
	}
	for _, p := range []string{logA, logB} {
		b, _ := os.ReadFile(p)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "msg=attestation") {
				t.Logf("%s: %s", filepath.Base(p), clip(l, 400))
			}
		}
		if n := countLines(p, "checkpoint_fallback"); n != 0 {
			t.Errorf("%s: %d attestations fell back to a full replay", filepath.Base(p), n)
		}
		if n := countLines(p, "result=rejected"); n != 0 {
			t.Errorf("%s: %d rejected attestations", filepath.Base(p), n)
		}
	}
}
