package nodeattestor_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/nodeattestor"
	"github.com/ccnp-spire/ccnp-spire/tee"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
)

func TestSmokeSim(t *testing.T) {
	dir := t.TempDir()
	if err := sim.Init(filepath.Join(dir, "sim"), sim.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := conf.ParseAgentNodeAttestor(`tee = "sim"
sim { dir = "` + filepath.Join(dir, "sim") + `" }
instance_id_path = "` + filepath.Join(dir, "id") + `"
`)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := tee.Open(ctx, nodeattestor.TEEConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	hb, err := nodeattestor.Hello(ctx, p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := evidence.NewNonce()
	pl, err := nodeattestor.Collect(ctx, p, cfg, hb, &evidencepb.Challenge{Nonce: n, Want: []evidencepb.LogKind{1, 2, 3, 4}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := evidence.Encode(pl)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := evidence.DecodeEvidence(b, evidence.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if err := evidence.CheckBinding(ev.Binding, n, hb); err != nil {
		t.Fatal(err)
	}
	t.Logf("evidence %d bytes, ccel %v", len(b), ev.Ccel != nil)
}
