// Package ccnppb holds the protobuf messages and gRPC service of CCNP's
// unified server API (proto package ccnp_server_pb, service ccnp), generated
// from ccnp-server.proto in this directory. The .proto says where its names and
// field numbers come from and what this project's server means by them.
package ccnppb

//go:generate protoc -I . --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative ccnp-server.proto
