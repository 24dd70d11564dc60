package spireload

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// datastorePrefix is how spire-server's Prometheus sink names the call
// counters of its datastore wrapper (pkg/common/telemetry/server/datastore
// at v1.13.3): spire_server_datastore_<object>_<operation>{status=...},
// one increment per call, beside <...>_elapsed_time histograms.
const datastorePrefix = "spire_server_datastore_"

// writeOps are the operation suffixes of the datastore calls that change
// the database (SPIRE's DataStore interface: create, update, set, delete,
// append, prune, and taint/revoke of keys; fetch, list and count read).
var writeOps = []string{"_create", "_update", "_set", "_delete", "_append", "_prune", "_taint", "_revoke"}

// DatastoreCalls counts spire-server's datastore calls by metric name (the
// object and operation, e.g. "node_update", "node_selectors_set"), every
// status together.
type DatastoreCalls map[string]float64

// scrapeDatastore reads the datastore call counters from spire-server's
// Prometheus endpoint.
func scrapeDatastore(ctx context.Context, url string) (DatastoreCalls, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("spire-server metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("spire-server metrics: %s", resp.Status)
	}
	return parseDatastore(resp.Body)
}

// parseDatastore sums the datastore call counters of a Prometheus text
// exposition over their labels.
func parseDatastore(r io.Reader) (DatastoreCalls, error) {
	out := DatastoreCalls{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, datastorePrefix) {
			continue
		}
		name, rest, _ := strings.Cut(line, "{")
		if i := strings.LastIndexByte(rest, '}'); i >= 0 {
			rest = rest[i+1:]
		} else {
			name, rest, _ = strings.Cut(line, " ")
		}
		// Histograms and summaries of elapsed time are not calls.
		if strings.Contains(name, "elapsed_time") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return nil, fmt.Errorf("spire-server metrics: no value in %q", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("spire-server metrics: %q: %w", line, err)
		}
		out[strings.TrimPrefix(name, datastorePrefix)] += v
	}
	return out, sc.Err()
}

// Sub is the calls made between before and c.
func (c DatastoreCalls) Sub(before DatastoreCalls) DatastoreCalls {
	out := DatastoreCalls{}
	for k, v := range c {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// Writes is the number of calls that change the database.
func (c DatastoreCalls) Writes() float64 {
	var n float64
	for k, v := range c {
		if IsWrite(k) {
			n += v
		}
	}
	return n
}

// Total is the number of calls.
func (c DatastoreCalls) Total() float64 {
	var n float64
	for _, v := range c {
		n += v
	}
	return n
}

// IsWrite says whether the datastore call named op changes the database.
func IsWrite(op string) bool {
	for _, w := range writeOps {
		if strings.HasSuffix(op, w) {
			return true
		}
	}
	return false
}
