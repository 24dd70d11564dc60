package azure

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ccnp-spire/ccnp-spire/tdxquote"
)

// The instance metadata service's TD quote endpoint, as Azure's own tooling
// (azure-cvm-tooling's az-tdx-vtpm, trustee's attester) calls it: POST a
// JSON {"report": base64url(TD report)} with "Metadata: true" and exactly
// "Content-Type: application/json" (the endpoint answers 415 to a charset
// parameter), get {"quote": base64url(TD quote)}.
const (
	// DefaultIMDSURL is the link-local metadata service of every Azure VM.
	DefaultIMDSURL = "http://169.254.169.254/acc/tdquote"
	// DefaultIMDSTimeout bounds one request: the service answers in well
	// under a second, so a few seconds is a hung service.
	DefaultIMDSTimeout = 5 * time.Second
	// MaxIMDSResponse bounds the response body: a TD quote is under
	// tdxquote.MaxQuoteSize (64 KiB) with its certification data, which
	// base64 makes 4/3 larger; the rest of the JSON is a few bytes.
	MaxIMDSResponse = tdxquote.MaxQuoteSize*4/3 + 4<<10
	// imdsAttempts bounds the tries of one quote request: a 5xx, a 429 or
	// a timeout is retried twice, after imdsBackoff and twice that. A 4xx
	// is an answer about the report and is not retried.
	imdsAttempts = 3
	imdsBackoff  = 250 * time.Millisecond
	// excerptSize bounds how much of an error body an error message quotes.
	excerptSize = 256
)

// IMDSOptions configures the metadata service client.
type IMDSOptions struct {
	// URL is the TD quote endpoint (DefaultIMDSURL when empty); tests point
	// it at a loopback server.
	URL string
	// Timeout bounds each request (DefaultIMDSTimeout when zero); the
	// caller's context bounds them all.
	Timeout time.Duration
}

// IMDSClient asks the instance metadata service for TD quotes.
type IMDSClient struct {
	url     string
	timeout time.Duration
	http    *http.Client
	backoff time.Duration
}

// NewIMDSClient checks opts and returns a client. The client never follows
// redirects (the metadata service does not send any; one would be somebody
// else answering) and never uses a proxy from the environment (a
// link-local service cannot be reached through one, and the TD report must
// not leave the VM for a proxy).
func NewIMDSClient(opts IMDSOptions) (*IMDSClient, error) {
	u := opts.URL
	if u == "" {
		u = DefaultIMDSURL
	}
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" || pu.User != nil || pu.Fragment != "" {
		return nil, fmt.Errorf("azure: metadata service URL %q: want http(s)://host/path without credentials or fragment", u)
	}
	to := opts.Timeout
	if to == 0 {
		to = DefaultIMDSTimeout
	}
	if to < 0 {
		return nil, fmt.Errorf("azure: metadata service timeout %v is negative", to)
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            (&net.Dialer{Timeout: to}).DialContext,
		ResponseHeaderTimeout:  to,
		MaxResponseHeaderBytes: 16 << 10,
		DisableKeepAlives:      true,
	}
	return &IMDSClient{
		url:     u,
		timeout: to,
		backoff: imdsBackoff,
		http: &http.Client{
			Transport: tr,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}, nil
}

// URL is the endpoint the client posts to, for error messages and logs.
func (c *IMDSClient) URL() string { return c.url }

// IMDSError is a failed quote request: which URL, the HTTP status if one
// came back (0 otherwise), and whether trying again later may help.
type IMDSError struct {
	URL       string
	Status    int
	Retryable bool
	Err       error
}

func (e *IMDSError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("azure: metadata service %s: HTTP %d: %v", e.URL, e.Status, e.Err)
	}
	return fmt.Sprintf("azure: metadata service %s: %v", e.URL, e.Err)
}

func (e *IMDSError) Unwrap() error { return e.Err }

// TDQuote posts tdReport and returns the TD quote the service made for it.
// Transient failures (5xx, 429, timeouts, refused connections) are retried
// up to three attempts in all, within ctx; anything else fails at once.
func (c *IMDSClient) TDQuote(ctx context.Context, tdReport []byte) ([]byte, error) {
	if len(tdReport) != tdxquote.TDReportSize {
		return nil, &IMDSError{URL: c.url, Err: fmt.Errorf("TD report is %d bytes, want %d", len(tdReport), tdxquote.TDReportSize)}
	}
	body, err := json.Marshal(struct {
		Report string `json:"report"`
	}{base64.RawURLEncoding.EncodeToString(tdReport)})
	if err != nil {
		return nil, &IMDSError{URL: c.url, Err: err}
	}
	var last *IMDSError
	for attempt := range imdsAttempts {
		if attempt > 0 {
			t := time.NewTimer(c.backoff << (attempt - 1))
			select {
			case <-ctx.Done():
				t.Stop()
				last.Err = fmt.Errorf("%w (gave up retrying: %w)", last.Err, ctx.Err())
				return nil, last
			case <-t.C:
			}
		}
		q, err := c.post(ctx, body)
		if err == nil {
			return q, nil
		}
		last = err
		if !err.Retryable || ctx.Err() != nil {
			break
		}
	}
	if last.Retryable {
		last.Err = fmt.Errorf("%w (after %d attempts)", last.Err, imdsAttempts)
	}
	return nil, last
}

func (c *IMDSClient) post(parent context.Context, body []byte) ([]byte, *IMDSError) {
	ctx, cancel := context.WithTimeout(parent, c.timeout)
	defer cancel()
	timedOut := func(err error) error {
		if parent.Err() == nil && ctx.Err() != nil {
			return fmt.Errorf("no answer within the timeout of %v (azure_tdx.imds_timeout): %w", c.timeout, err)
		}
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, &IMDSError{URL: c.url, Err: err}
	}
	req.Header.Set("Metadata", "true")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	rsp, err := c.http.Do(req)
	if err != nil {
		// Connection refused, reset, timed out: the service may be
		// starting or overloaded. A cancelled caller is not retried (the
		// loop checks ctx).
		return nil, &IMDSError{URL: c.url, Retryable: true, Err: timedOut(unwrapURLError(err))}
	}
	defer rsp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(rsp.Body, MaxIMDSResponse+1))
	if err != nil {
		return nil, &IMDSError{URL: c.url, Status: rsp.StatusCode, Retryable: true, Err: fmt.Errorf("reading the response: %w", timedOut(unwrapURLError(err)))}
	}
	if rsp.StatusCode < 200 || rsp.StatusCode > 299 {
		retry := rsp.StatusCode >= 500 || rsp.StatusCode == http.StatusTooManyRequests
		what := "the service refused the TD report"
		switch {
		case retry:
			what = "the service failed"
		case rsp.StatusCode >= 300 && rsp.StatusCode < 400:
			what = fmt.Sprintf("a redirect to %q, which is not followed", excerpt([]byte(rsp.Header.Get("Location"))))
		}
		return nil, &IMDSError{URL: c.url, Status: rsp.StatusCode, Retryable: retry, Err: fmt.Errorf("%s; body: %q", what, excerpt(raw))}
	}
	if len(raw) > MaxIMDSResponse {
		return nil, &IMDSError{URL: c.url, Status: rsp.StatusCode, Err: fmt.Errorf("response body is over %d bytes: no TD quote is that large", MaxIMDSResponse)}
	}
	q, err := DecodeQuoteResponse(raw)
	if err != nil {
		return nil, &IMDSError{URL: c.url, Status: rsp.StatusCode, Err: err}
	}
	return q, nil
}

// unwrapURLError drops net/http's "Post URL:" prefix: IMDSError names the
// URL once.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// excerpt is the start of b, for error messages about what a server sent.
func excerpt(b []byte) string {
	if len(b) > excerptSize {
		return string(b[:excerptSize]) + "..."
	}
	return string(b)
}

// DecodeQuoteResponse reads the service's answer, {"quote": base64url}.
// The quote is base64url as Azure writes it, unpadded, or padded as some
// clients expect; it must be non-empty and within tdxquote.MaxQuoteSize.
// Only its size is checked here: what it proves is the verifier's business.
func DecodeQuoteResponse(b []byte) ([]byte, error) {
	var r struct {
		Quote *string `json:"quote"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("response is not the expected JSON {\"quote\": \"...\"}: %w", err)
	}
	if rest := bytes.TrimSpace(b[dec.InputOffset():]); len(rest) > 0 {
		return nil, fmt.Errorf("response has %d bytes after its JSON document", len(rest))
	}
	if r.Quote == nil {
		return nil, errors.New("response has no \"quote\" field")
	}
	s := strings.TrimRight(*r.Quote, "=")
	if len(*r.Quote)-len(s) > 2 {
		return nil, errors.New("response \"quote\" has more than two padding characters")
	}
	if s == "" {
		return nil, errors.New("response \"quote\" is empty")
	}
	if base64.RawURLEncoding.DecodedLen(len(s)) > tdxquote.MaxQuoteSize {
		return nil, fmt.Errorf("response \"quote\" is %d characters: more than a %d-byte TD quote", len(s), tdxquote.MaxQuoteSize)
	}
	q, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("response \"quote\" is not base64url: %w", err)
	}
	return q, nil
}
