#!/usr/bin/env python3
"""Independent replay of TCG crypto-agile CC event logs (CCEL).

Written from the TCG PC Client PFP / UEFI CC measurement layout, with no code
shared with the Go packages it checks: python3 standard library only.

Layout walked:
  first event (SHA-1 format): u32 index, u32 type, 20-byte digest, u32 size,
      data = TCG_EfiSpecIDEvent ("Spec ID Event03\\0", ..., u32 numAlgs,
      numAlgs x {u16 algId, u16 digestSize}, u8 vendorInfoSize, vendorInfo)
  every later event: u32 index, u32 type, u32 count,
      count x {u16 algId, digest[size from the spec ID event]}, u32 size, data
  an index of 0xFFFFFFFF (or the end of the buffer) ends the log.

Replay: every event except EV_NO_ACTION (type 3) extends its SHA-384 digest
into CC MR <index> (0 = MRTD, 1..4 = RTMR0..3): new = SHA384(old || digest),
starting from 48 zero bytes.

Usage: replay.py FILE...   prints {"file": {"rtmr0": hex, ...}} as JSON.
"""
import hashlib
import json
import os
import struct
import sys

SHA384 = 0x000C
EV_NO_ACTION = 3


def replay(buf):
    off = 0
    idx, typ = struct.unpack_from("<II", buf, off)
    off += 8 + 20
    (size,) = struct.unpack_from("<I", buf, off)
    off += 4
    spec = buf[off:off + size]
    off += size
    if typ != EV_NO_ACTION or not spec.startswith(b"Spec ID Event03\0"):
        raise ValueError("not a crypto-agile log")
    (nalgs,) = struct.unpack_from("<I", spec, 24)
    sizes = {}
    for i in range(nalgs):
        alg, dsize = struct.unpack_from("<HH", spec, 28 + 4 * i)
        sizes[alg] = dsize
    mrs = {}
    events = 1
    while off + 4 <= len(buf):
        (idx,) = struct.unpack_from("<I", buf, off)
        if idx == 0xFFFFFFFF:
            break
        typ, count = struct.unpack_from("<II", buf, off + 4)
        off += 12
        sha384 = None
        for _ in range(count):
            (alg,) = struct.unpack_from("<H", buf, off)
            off += 2
            d = buf[off:off + sizes[alg]]
            off += sizes[alg]
            if alg == SHA384:
                sha384 = d
        (size,) = struct.unpack_from("<I", buf, off)
        off += 4 + size
        if off > len(buf):
            raise ValueError("event %d runs past the end" % events)
        events += 1
        if typ == EV_NO_ACTION:
            continue
        old = mrs.get(idx, bytes(48))
        mrs[idx] = hashlib.sha384(old + sha384).digest()
    out = {"events": events}
    for ccmr in range(1, 5):
        out["rtmr%d" % (ccmr - 1)] = mrs.get(ccmr, bytes(48)).hex()
    return out


def main():
    res = {}
    for path in sys.argv[1:]:
        with open(path, "rb") as f:
            res[os.path.basename(path)] = replay(f.read())
    json.dump(res, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
