//go:build !race

package workloadsvc

const raceEnabled = false
