package spireload

import (
	"strings"
	"testing"
)

// TestParseDatastore reads the datastore call counters out of a Prometheus
// exposition as spire-server v1.13.3 writes it (counters per status
// label, elapsed-time summaries beside them, other series around), and
// tells writes from reads.
func TestParseDatastore(t *testing.T) {
	const exposition = `# HELP spire_server_datastore_node_update spire_server_datastore_node_update
# TYPE spire_server_datastore_node_update counter
spire_server_datastore_node_update{status="OK"} 743
spire_server_datastore_node_update{status="Unknown"} 2
spire_server_datastore_node_update_elapsed_time{status="OK",quantile="0.5"} 0.9
spire_server_datastore_node_update_elapsed_time_sum{status="OK"} 700.5
spire_server_datastore_node_update_elapsed_time_count{status="OK"} 743
spire_server_datastore_node_fetch{status="OK"} 745
spire_server_datastore_node_selectors_set{status="OK"} 745
spire_server_datastore_node_selectors_list{status="OK"} 1
spire_server_datastore_registration_entry_prune 3
spire_server_rpc_agent_v1_agent_attest_agent{status="OK"} 745
`
	got, err := parseDatastore(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	want := DatastoreCalls{"node_update": 745, "node_fetch": 745, "node_selectors_set": 745, "node_selectors_list": 1, "registration_entry_prune": 3}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %v, want %v", k, got[k], v)
		}
	}
	if w := got.Writes(); w != 745+745+3 {
		t.Errorf("writes %v, want %v", w, 745+745+3)
	}
	if n := got.Total(); n != 745*3+1+3 {
		t.Errorf("total %v, want %v", n, 745*3+1+3)
	}
	d := got.Sub(DatastoreCalls{"node_update": 700, "node_fetch": 745})
	if d["node_update"] != 45 || d["node_selectors_set"] != 745 {
		t.Errorf("Sub: %v", d)
	}
	if _, ok := d["node_fetch"]; ok {
		t.Errorf("Sub keeps an operation with no calls: %v", d)
	}
	if _, err := parseDatastore(strings.NewReader("spire_server_datastore_node_fetch{status=\"OK\"} many\n")); err == nil {
		t.Error("a value that is not a number was accepted")
	}
}
