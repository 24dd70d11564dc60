//go:build tools

// This file pins the modules the packages under construction import, so that
// go.sum stays complete while they land. It is removed once real imports
// hold every one of them.
package tools

import (
	_ "github.com/gofrs/flock"
	_ "github.com/google/go-configfs-tsm/configfs/faketsm"
	_ "github.com/google/go-configfs-tsm/configfs/linuxtsm"
	_ "github.com/google/go-configfs-tsm/report"
	_ "github.com/google/go-configfs-tsm/rtmr"
	_ "github.com/google/go-eventlog/ccel"
	_ "github.com/google/go-eventlog/cel"
	_ "github.com/google/go-eventlog/extract"
	_ "github.com/google/go-eventlog/register"
	_ "github.com/google/go-eventlog/tcg"
	_ "github.com/google/go-eventlog/tpmeventlog"
	_ "github.com/google/go-tdx-guest/abi"
	_ "github.com/google/go-tdx-guest/pcs"
	_ "github.com/google/go-tdx-guest/verify"
	_ "github.com/google/go-tdx-guest/verify/trust"
	_ "github.com/google/go-tpm-tools/client"
	_ "github.com/google/go-tpm-tools/server"
	_ "github.com/google/go-tpm-tools/simulator"
	_ "github.com/google/go-tpm/legacy/tpm2"
	_ "github.com/google/go-tpm/tpm2"
	_ "github.com/google/go-tpm/tpm2/transport"
	_ "github.com/hashicorp/go-hclog"
	_ "github.com/hashicorp/hcl"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/spf13/cobra"
	_ "github.com/spiffe/go-spiffe/v2/workloadapi"
	_ "github.com/spiffe/spire-plugin-sdk/pluginmain"
	_ "github.com/spiffe/spire-plugin-sdk/pluginsdk"
	_ "github.com/spiffe/spire-plugin-sdk/plugintest"
	_ "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/nodeattestor/v1"
	_ "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/workloadattestor/v1"
	_ "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	_ "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	_ "google.golang.org/grpc"
	_ "google.golang.org/protobuf/proto"
)
