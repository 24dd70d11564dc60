package azure

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ccnp-spire/ccnp-spire/tdxquote"
)

// testReport is a TD report's size of recognisable bytes.
var testReport = bytes.Repeat([]byte{0xfb, 0xff}, tdxquote.TDReportSize/2)

// fakeIMDS serves handler and counts requests.
func fakeIMDS(t *testing.T, handler func(w http.ResponseWriter, r *http.Request, n int)) (*IMDSClient, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler(w, r, int(n.Add(1)))
	}))
	t.Cleanup(srv.Close)
	c, err := NewIMDSClient(IMDSOptions{URL: srv.URL + "/acc/tdquote", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c.backoff = 10 * time.Millisecond
	return c, &n
}

func quoteJSON(q []byte) string {
	return fmt.Sprintf(`{"quote":%q}`, base64.RawURLEncoding.EncodeToString(q))
}

// The request is the one Azure's tooling sends: POST, "Metadata: true",
// exactly "application/json", {"report": unpadded base64url}.
func TestIMDSRequestShape(t *testing.T) {
	want := []byte("a TD quote")
	c, n := fakeIMDS(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		if r.Method != http.MethodPost || r.URL.Path != "/acc/tdquote" {
			t.Errorf("%s %s", r.Method, r.URL.Path)
		}
		if r.Header.Get("Metadata") != "true" || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Accept") != "application/json" {
			t.Errorf("headers %v", r.Header)
		}
		var body map[string]string
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Error(err)
		}
		if len(body) != 1 || strings.ContainsAny(body["report"], "=+/") {
			t.Errorf("body %v is not {report: unpadded base64url}", body)
		}
		if got, _ := base64.RawURLEncoding.DecodeString(body["report"]); !bytes.Equal(got, testReport) {
			t.Error("the posted report is not the TD report")
		}
		io.WriteString(w, quoteJSON(want))
	})
	q, err := c.TDQuote(context.Background(), testReport)
	if err != nil || !bytes.Equal(q, want) || n.Load() != 1 {
		t.Fatalf("TDQuote = %q, %v after %d requests", q, err, n.Load())
	}
	if _, err := c.TDQuote(context.Background(), testReport[:100]); err == nil {
		t.Error("a 100-byte TD report was posted")
	}
}

// wantIMDSError checks err is an *IMDSError with status and message parts.
func wantIMDSError(t *testing.T, err error, status int, parts ...string) {
	t.Helper()
	var ie *IMDSError
	if !errors.As(err, &ie) {
		t.Fatalf("error %v (%T) is not an IMDSError", err, err)
	}
	if ie.Status != status {
		t.Errorf("status %d, want %d (%v)", ie.Status, status, err)
	}
	for _, p := range append(parts, "/acc/tdquote") {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
}

func TestIMDSStatus(t *testing.T) {
	t.Run("4xx not retried, body excerpt bounded", func(t *testing.T) {
		c, n := fakeIMDS(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, "invalid report"+strings.Repeat("x", 10000))
		})
		_, err := c.TDQuote(context.Background(), testReport)
		wantIMDSError(t, err, 400, "HTTP 400", "refused the TD report", "invalid report")
		if n.Load() != 1 || len(err.Error()) > 1000 {
			t.Errorf("%d requests, message of %d bytes", n.Load(), len(err.Error()))
		}
	})
	t.Run("5xx retried then succeeds", func(t *testing.T) {
		c, n := fakeIMDS(t, func(w http.ResponseWriter, _ *http.Request, i int) {
			if i < 3 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, quoteJSON([]byte("q")))
		})
		if q, err := c.TDQuote(context.Background(), testReport); err != nil || string(q) != "q" || n.Load() != 3 {
			t.Fatalf("TDQuote = %q, %v after %d requests", q, err, n.Load())
		}
	})
	t.Run("5xx bounded", func(t *testing.T) {
		c, n := fakeIMDS(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
			http.Error(w, "boom", http.StatusInternalServerError)
		})
		_, err := c.TDQuote(context.Background(), testReport)
		wantIMDSError(t, err, 500, "HTTP 500", "boom", "after 3 attempts")
		if n.Load() != imdsAttempts {
			t.Errorf("%d requests, want %d", n.Load(), imdsAttempts)
		}
		var ie *IMDSError
		if errors.As(err, &ie) && !ie.Retryable {
			t.Error("a 500 is not marked retryable")
		}
	})
	t.Run("redirect not followed", func(t *testing.T) {
		var followed atomic.Bool
		other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			followed.Store(true)
			io.WriteString(w, quoteJSON([]byte("from elsewhere")))
		}))
		defer other.Close()
		c, _ := fakeIMDS(t, func(w http.ResponseWriter, r *http.Request, _ int) {
			http.Redirect(w, r, other.URL+"/acc/tdquote", http.StatusTemporaryRedirect)
		})
		_, err := c.TDQuote(context.Background(), testReport)
		wantIMDSError(t, err, 307, "redirect", other.URL)
		if followed.Load() {
			t.Error("the client followed the redirect and posted the TD report elsewhere")
		}
	})
}

// A hung service costs each attempt its timeout, never more, and the
// client gives up after its attempts.
func TestIMDSTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c, err := NewIMDSClient(IMDSOptions{URL: srv.URL + "/acc/tdquote", Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c.backoff = 10 * time.Millisecond
	start := time.Now()
	_, err = c.TDQuote(context.Background(), testReport)
	took := time.Since(start)
	t.Logf("3 attempts against a hung service took %v (timeout 200ms each)", took)
	wantIMDSError(t, err, 0, "timeout", "after 3 attempts")
	if took > 10*time.Second {
		t.Errorf("took %v", took)
	}
	// The caller's deadline bounds the whole.
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	c.timeout = 5 * time.Second
	start = time.Now()
	if _, err := c.TDQuote(ctx, testReport); err == nil || time.Since(start) > 4*time.Second {
		t.Errorf("TDQuote under a 250ms context = %v after %v", err, time.Since(start))
	}
}

func TestIMDSBadResponses(t *testing.T) {
	big := `{"quote":"` + strings.Repeat("A", MaxIMDSResponse) + `"}`
	for _, tt := range []struct {
		name, body string
		parts      []string
	}{
		{"not json", "<html>", []string{"not the expected JSON"}},
		{"no quote", `{"report":"AAAA"}`, []string{`no "quote" field`}},
		{"empty quote", `{"quote":""}`, []string{`"quote" is empty`}},
		{"quote not string", `{"quote":5}`, []string{"not the expected JSON"}},
		{"standard base64", `{"quote":"ab+/"}`, []string{"not base64url"}},
		{"trailing", quoteJSON([]byte("q")) + "{}", []string{"after its JSON document"}},
		{"oversize", big, []string{"over", "no TD quote is that large"}},
		{"quote over the TD quote bound", `{"quote":"` + strings.Repeat("A", tdxquote.MaxQuoteSize*4/3+8) + `"}`, []string{"more than a 65536-byte TD quote"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, n := fakeIMDS(t, func(w http.ResponseWriter, _ *http.Request, _ int) { io.WriteString(w, tt.body) })
			_, err := c.TDQuote(context.Background(), testReport)
			wantIMDSError(t, err, 200, tt.parts...)
			if n.Load() != 1 {
				t.Errorf("a bad answer was retried (%d requests)", n.Load())
			}
		})
	}
}

func TestDecodeQuoteResponsePadding(t *testing.T) {
	q := []byte("quote!")
	for _, s := range []string{base64.RawURLEncoding.EncodeToString(q), base64.URLEncoding.EncodeToString(q)} {
		got, err := DecodeQuoteResponse([]byte(`{"quote":"` + s + `"}`))
		if err != nil || !bytes.Equal(got, q) {
			t.Errorf("%s: %q, %v", s, got, err)
		}
	}
	if _, err := DecodeQuoteResponse([]byte(`{"quote":"cXVvdGUh==="}`)); err == nil {
		t.Error("three padding characters accepted")
	}
}

func TestNewIMDSClient(t *testing.T) {
	c, err := NewIMDSClient(IMDSOptions{})
	if err != nil || c.URL() != DefaultIMDSURL || c.timeout != DefaultIMDSTimeout {
		t.Fatalf("defaults: %v %v", c, err)
	}
	for _, u := range []string{"ftp://x/acc", "169.254.169.254/acc/tdquote", "http://u:p@x/acc", "http:///acc"} {
		if _, err := NewIMDSClient(IMDSOptions{URL: u}); err == nil {
			t.Errorf("URL %q accepted", u)
		}
	}
	if _, err := NewIMDSClient(IMDSOptions{Timeout: -time.Second}); err == nil {
		t.Error("negative timeout accepted")
	}
}

func FuzzDecodeQuoteResponse(f *testing.F) {
	for _, s := range []string{quoteJSON([]byte("q")), `{"quote":"cXVvdGUh"}`, `{"quote":"cXVvdGUh=="}`, `{"quote":""}`, `{}`, `[]`, `{"quote":null}`, "", `{"quote":"a"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := DecodeQuoteResponse(b)
		if err == nil && (len(q) == 0 || len(q) > tdxquote.MaxQuoteSize) {
			t.Fatalf("accepted a %d-byte quote", len(q))
		}
	})
}
