//go:build race

package workloadsvc

// raceEnabled: the race detector makes decoding ~10x slower; the flood
// test then uses half the log (see floodLogSize).
const raceEnabled = true
