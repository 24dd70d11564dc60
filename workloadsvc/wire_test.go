package workloadsvc

import (
	"bytes"
	"crypto/sha512"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/ccnp-spire/ccnp-spire/appraisal"
)

// The wire tests call the server as a client that knows only the .proto
// (or only CCNP's field numbers) would: by full method name, with messages
// that owe nothing to the generated Go types.

const reportMethod = "/ccnp_server_pb.ccnp/GetCcReport"

// checkQuote appraises a quote under the simulated root with the expected
// REPORTDATA = SHA-512(container IMR || nonce || user_data).
func checkQuote(t *testing.T, f *fixture, quote []byte, key string, nonce, ud []byte) {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(f.provider.RootPEM()) {
		t.Fatal("sim root.pem")
	}
	imr, _ := f.wantIMR(key)
	want := sha512.Sum512(append(append(append([]byte{}, imr...), nonce...), ud...))
	if _, err := appraisal.TDX(f.ctx, appraisal.TDXEvidence{Quote: quote, ReportData: want[:]}, appraisal.TDXOptions{TrustedRoots: roots}); err != nil {
		t.Fatalf("appraisal: %v", err)
	}
	if len(quote) < 632 || !bytes.Equal(quote[568:632], want[:]) {
		t.Fatal("REPORTDATA is not SHA-512(container IMR || nonce || user_data)")
	}
}

// TestWireDynamic parses ccnp-server.proto with protoc, builds messages
// with dynamicpb from that descriptor alone, and invokes GetCcReport.
func TestWireDynamic(t *testing.T) {
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		t.Skip("protoc not installed: the protowire test covers the wire format")
	}
	set := filepath.Join(t.TempDir(), "set.pb")
	out, err := exec.Command(protoc, "-I", "ccnppb", "--descriptor_set_out="+set, "ccnp-server.proto").CombinedOutput()
	if err != nil {
		t.Fatalf("protoc: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(set)
	if err != nil {
		t.Fatal(err)
	}
	var fds descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(raw, &fds); err != nil {
		t.Fatal(err)
	}
	files, err := protodesc.NewFiles(&fds)
	if err != nil {
		t.Fatal(err)
	}
	find := func(name string) protoreflect.MessageDescriptor {
		d, err := files.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			t.Fatal(err)
		}
		return d.(protoreflect.MessageDescriptor)
	}
	svc, err := files.FindDescriptorByName("ccnp_server_pb.ccnp")
	if err != nil {
		t.Fatal(err)
	}
	if m := svc.(protoreflect.ServiceDescriptor).Methods().ByName("GetCcReport"); m == nil {
		t.Fatal("no GetCcReport in the .proto")
	}

	f := newFixture(t)
	nonce, ud := randomBytes(t, 32), randomBytes(t, 16)
	req := dynamicpb.NewMessage(find("ccnp_server_pb.GetCcReportRequest"))
	fields := req.Descriptor().Fields()
	req.Set(fields.ByName("container_id"), protoreflect.ValueOfString(cidA))
	req.Set(fields.ByName("nonce"), protoreflect.ValueOfString(b64(nonce)))
	req.Set(fields.ByName("user_data"), protoreflect.ValueOfString(b64(ud)))
	resp := dynamicpb.NewMessage(find("ccnp_server_pb.GetCcReportResponse"))
	if err := f.conn.Invoke(f.ctx, reportMethod, req, resp); err != nil {
		t.Fatal(err)
	}
	rf := resp.Descriptor().Fields()
	if got := resp.Get(rf.ByName("cc_type")).Int(); got != 1 {
		t.Errorf("cc_type %d, want 1 (TDX)", got)
	}
	checkQuote(t, f, resp.Get(rf.ByName("cc_report")).Bytes(), cidA, nonce, ud)
}

// rawCodec passes bytes through, so a test can put hand-encoded messages
// on the wire and read the reply's bytes.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }

var _ encoding.Codec = rawCodec{}

// TestWireHandBuilt encodes GetCcReportRequest from CCNP's field numbers
// (container_id 1, user_data 2, nonce 3: strings) with protowire and decodes
// the response's (cc_type 1 int32, cc_report 2 bytes) the same way.
func TestWireHandBuilt(t *testing.T) {
	f := newFixture(t)
	nonce, ud := randomBytes(t, 20), randomBytes(t, 40)
	var req []byte
	req = protowire.AppendTag(req, 1, protowire.BytesType)
	req = protowire.AppendString(req, cidA)
	req = protowire.AppendTag(req, 2, protowire.BytesType)
	req = protowire.AppendString(req, b64(ud))
	req = protowire.AppendTag(req, 3, protowire.BytesType)
	req = protowire.AppendString(req, b64(nonce))
	var resp []byte
	if err := f.conn.Invoke(f.ctx, reportMethod, &req, &resp, grpc.ForceCodec(rawCodec{})); err != nil {
		t.Fatal(err)
	}
	var ccType int64 = -1
	var quote []byte
	for b := resp; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatal(protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			ccType, b = int64(int32(v)), b[m:]
		case num == 2 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			quote, b = v, b[m:]
		default:
			t.Fatalf("unexpected field %d type %d in the response", num, typ)
		}
	}
	if ccType != 1 {
		t.Errorf("cc_type %d, want 1", ccType)
	}
	checkQuote(t, f, quote, cidA, nonce, ud)

	// The same request naming container B is refused: the number 1 field
	// is container_id.
	var forged []byte
	forged = protowire.AppendTag(forged, 1, protowire.BytesType)
	forged = protowire.AppendString(forged, cidB)
	err := f.conn.Invoke(f.ctx, reportMethod, &forged, &resp, grpc.ForceCodec(rawCodec{}))
	if !isPermissionDenied(err) {
		t.Fatalf("forged container_id over the wire: %v", err)
	}
}
