package tdx

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-tdx-guest/abi"
	pb "github.com/google/go-tdx-guest/proto/tdx"
)

// Real evidence from a COS 113 TD (go-tdx-guest, Apache-2.0; see
// testdata/tdx/README.md at the module root).
const (
	cosQuoteFile  = "../../testdata/tdx/cos-113-tdx-quote.dat"
	sprQuoteFile  = "../../testdata/tdx/tdx_prod_quote_SPR_E4.dat"
	ccelLogFile   = "../../testdata/tdx/ccel_data.dat"
	ccelTableFile = "../../testdata/tdx/ccel_table.dat"
)

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeFile creates root/rel with its parent directories.
func writeFile(t testing.TB, root, rel string, data []byte) string {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func mkdir(t testing.TB, root, rel string) string {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// quoteBody parses a quote with go-tdx-guest, a parser independent of ours,
// so tests take expected register values from it.
func quoteBody(t testing.TB, quote []byte) *pb.TDQuoteBody {
	t.Helper()
	q, err := abi.QuoteToProto(quote)
	if err != nil {
		t.Fatal(err)
	}
	v4, ok := q.(*pb.QuoteV4)
	if !ok {
		t.Fatalf("quote is %T, want v4", q)
	}
	return v4.GetTdQuoteBody()
}

func mustOpen(t testing.TB, opts Options) *Provider {
	t.Helper()
	if opts.HostRoot == "" {
		opts.HostRoot = t.TempDir()
	}
	p, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
