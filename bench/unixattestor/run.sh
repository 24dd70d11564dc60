#!/bin/sh
# Runs BenchmarkWorkloadAttest for ccnp and SPIRE's unix attestor in one
# `go test -bench` run and prints the p50 ratio (target: ccnp <= 1.5x unix).
set -eu
cd "$(dirname "$0")"
out=$(go test -run '^$' -bench WorkloadAttest -benchtime="${BENCHTIME:-2000x}" .)
printf '%s\n' "$out"
printf '%s\n' "$out" | awk '
	/BenchmarkWorkloadAttest\/ccnp-/ { for (i = 1; i <= NF; i++) if ($(i+1) == "p50-ns") c = $i }
	/BenchmarkWorkloadAttest\/unix-/ { for (i = 1; i <= NF; i++) if ($(i+1) == "p50-ns") u = $i }
	END { if (c && u) printf "p50 ccnp %d ns, unix %d ns, ratio %.2f\n", c, u, c / u }'
