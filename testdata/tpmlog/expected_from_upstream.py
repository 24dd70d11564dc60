#!/usr/bin/env python3
"""Rebuilds expected.json: the PCR values go-eventlog's own tests hold for
these real TPM logs (tpmeventlog/replay_test.go, extract/extract_test.go of
github.com/google/go-eventlog at the version named in README.md). They come
from the machines' TPMs as go-eventlog recorded them, not from this project.

Usage: expected_from_upstream.py GO_EVENTLOG_DIR > expected.json
"""
import json
import re
import sys

SOURCES = {
    # file in this dir: (upstream test file, Go expression that starts the bank list)
    "rhel8-uefi.bin": ("tpmeventlog/replay_test.go", "var Rhel8GCE = "),
    "ubuntu-2104-no-secure-boot.bin": ("tpmeventlog/replay_test.go", "var Ubuntu2104NoSecureBootGCE = "),
    "ubuntu-2404-amd-sevsnp.bin": ("tpmeventlog/replay_test.go", "var Ubuntu2404AmdSevSnp = "),
    "ubuntu-2404-intel-tdx.bin": ("extract/extract_test.go", "log := testdata.Ubuntu2404IntelTdxA4HighGpu8GEventLog"),
    "cos-125-intel-tdx-secure-boot.bin": ("extract/extract_test.go", "log := testdata.Cos125IntelTdxSecureBootA4HighGpu8GEventLog"),
}

BANK = re.compile(r"MakePCRBank\(pb\.HashAlgo_(SHA1|SHA256|SHA384), map\[uint32\]\[\]byte\{(.*?)\}\)", re.S)
PCR = re.compile(r"(\d+):\s*decodeHex\(\"([0-9a-f]+)\"\)")


def main():
    root = sys.argv[1]
    out = {}
    for name, (path, start) in SOURCES.items():
        with open(root + "/" + path) as f:
            src = f.read()
        i = src.index(start)
        # The bank list ends where the next top-level declaration starts.
        j = src.find("\n}\n", i)
        banks = {}
        for alg, body in BANK.findall(src[i:j]):
            banks[alg.lower()] = {"pcr%s" % n: h for n, h in PCR.findall(body)}
        out[name] = {"source": "go-eventlog " + path, "banks": banks}
    json.dump(out, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
