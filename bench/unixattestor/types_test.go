package unixattestor

import workloadattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/workloadattestor/v1"

type attestServer = workloadattestorv1.WorkloadAttestorServer
