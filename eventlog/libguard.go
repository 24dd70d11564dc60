package eventlog

import (
	"fmt"

	pb "github.com/google/go-eventlog/proto/state"
)

// extractGuarded runs one of go-eventlog's ReplayAndExtract calls and turns
// a panic inside the library into an error. The library panics on some
// event types it cannot map (tcg.Event.UntrustedType), and event types are
// not covered by any digest: a log whose every digest replays correctly can
// still carry one, so an agent could otherwise crash the server.
func extractGuarded(what string, f func() (*pb.FirmwareLogState, error)) (state *pb.FirmwareLogState, err error) {
	defer func() {
		if r := recover(); r != nil {
			state, err = nil, fmt.Errorf("eventlog: go-eventlog failed on the %s: %v", what, r)
		}
	}()
	return f()
}
