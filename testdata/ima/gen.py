#!/usr/bin/env python3
"""Build the IMA fixtures of eventlog/ima from first principles.

Independent of the Go parser: only the Python standard library (hashlib,
struct, json). The layouts follow the Linux kernel's
security/integrity/ima (ima_fs.c, ima_template_lib.c, ima_crypto.c) and the
ima-dep-cgn / ima-cgpath patches CCNP kernels carry; see README.md.

Run from anywhere: python3 testdata/ima/gen.py  (rewrites the files next to it)
"""

import hashlib
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

TEMPLATES = {
    "ima": ["d", "n"],
    "ima-ng": ["d-ng", "n-ng"],
    "ima-ngv2": ["d-ngv2", "n-ng"],
    "ima-sig": ["d-ng", "n-ng", "sig"],
    "ima-sigv2": ["d-ngv2", "n-ng", "sig"],
    "ima-buf": ["d-ng", "n-ng", "buf"],
    "ima-dep-cgn": ["dep", "cgn", "d-ng", "n-ng"],
    "ima-cgpath": ["dep", "cg-path", "d-ng", "n-ng"],
}
STRING_FIELDS = {"n-ng", "dep", "cgn", "cg-path"}
HEX_FIELDS = {"sig", "buf"}


def det(label, n):
    """Deterministic pseudo-random bytes (so re-running gives the same files)."""
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha512(f"{label}/{i}".encode()).digest()
        i += 1
    return out[:n]


class Entry:
    def __init__(self, pcr, template, fields, violation=False, thash="sha1"):
        self.pcr = pcr
        self.template = template
        self.fields = fields  # dict field-id -> value (see field_bytes)
        self.violation = violation
        # The template hash algorithm: sha1 upstream; sha384 on CCNP-patched
        # TDX kernels (RTMR2), sha256 on kernels built that way.
        self.thash = thash

    def field_bytes(self, fid):
        """A field's data as the kernel stores it (no length prefix)."""
        v = self.fields[fid]
        if fid == "d":
            assert len(v) == 20
            return v
        if fid == "n":
            return v.encode()  # kept without NUL; padded when hashed
        if fid == "d-ng":
            algo, digest = v
            return algo.encode() + b":\0" + digest
        if fid == "d-ngv2":
            typ, algo, digest = v
            return f"{typ}:{algo}:".encode() + b"\0" + digest
        if fid in STRING_FIELDS:
            return v.encode() + b"\0"
        if fid in HEX_FIELDS:
            return v
        raise ValueError(fid)

    def template_data(self, order):
        """What the template hash covers (ima_calc_field_array_hash_tfm)."""
        out = b""
        for fid in TEMPLATES[self.template]:
            data = self.field_bytes(fid)
            if self.template == "ima":
                if fid == "n":
                    # name copied into a zeroed IMA_EVENT_NAME_LEN_MAX+1 buffer
                    assert len(data) <= 255
                    data = data + b"\0" * (256 - len(data))
                out += data
            else:
                out += struct.pack(order + "I", len(data)) + data
        return out

    def template_hash(self, order):
        h = hashlib.new(self.thash)
        if self.violation:
            return b"\0" * h.digest_size
        h.update(self.template_data(order))
        return h.digest()

    def ascii(self, order):
        parts = []
        for fid in TEMPLATES[self.template]:
            v = self.fields[fid]
            if fid == "d":
                parts.append(v.hex())
            elif fid == "n" or fid in STRING_FIELDS:
                parts.append(v)
            elif fid == "d-ng":
                parts.append(v[0] + ":" + v[1].hex())
            elif fid == "d-ngv2":
                parts.append(f"{v[0]}:{v[1]}:" + v[2].hex())
            else:
                parts.append(v.hex())
        # ima_ascii_measurements_show: "%2d ", hash, " name", then " field" each
        line = "%2d %s %s" % (self.pcr, self.template_hash(order).hex(), self.template)
        for p in parts:
            line += " " + p
        return line + "\n"

    def binary(self, order):
        u32 = lambda x: struct.pack(order + "I", x)
        name = self.template.encode()
        out = u32(self.pcr) + self.template_hash(order) + u32(len(name)) + name
        if self.template == "ima":
            # ima_measurements_show: no template data length; d without length,
            # n as u32 strlen + the name without NUL
            n = self.fields["n"].encode()
            return out + self.fields["d"] + u32(len(n)) + n
        td = b""
        for fid in TEMPLATES[self.template]:
            data = self.field_bytes(fid)
            td += u32(len(data)) + data
        return out + u32(len(td)) + td

    def expected(self, order):
        e = {"pcr": self.pcr, "template": self.template, "violation": self.violation,
             "template_hash": self.template_hash(order).hex()}
        f = self.fields
        if "d" in f:
            e["digest_algo"], e["digest"] = "sha1", f["d"].hex()
        if "d-ng" in f:
            e["digest_algo"], e["digest"] = f["d-ng"][0], f["d-ng"][1].hex()
        if "d-ngv2" in f:
            e["digest_type"], e["digest_algo"], e["digest"] = f["d-ngv2"][0], f["d-ngv2"][1], f["d-ngv2"][2].hex()
        e["name"] = f.get("n", f.get("n-ng"))
        for k, key in (("sig", "sig"), ("buf", "buf")):
            if k in f:
                e[key] = f[k].hex()
        for k, key in (("dep", "dep"), ("cgn", "cgroup_name"), ("cg-path", "cgroup_path")):
            if k in f:
                e[key] = f[k]
        return e


def replay(entries, order):
    """PCR value per bank: the bank of the template hash's algorithm extends
    the template hash, the other banks H(template data) (the kernel hashes
    the template data once per bank); a violation extends all 0xFF."""
    banks = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384}
    pcrs = {}
    for e in entries:
        regs = pcrs.setdefault(str(e.pcr), {})
        for name, h in banks.items():
            size = h().digest_size
            cur = regs.get(name, b"\0" * size)
            if e.violation:
                d = b"\xff" * size
            elif name == e.thash:
                d = e.template_hash(order)
            else:
                d = h(e.template_data(order)).digest()
            regs[name] = h(cur + d).digest()
    return {p: {k: v.hex() for k, v in r.items()} for p, r in pcrs.items()}


def sig_v2(label, algo_id=4):
    """An IMA signature v2 header (type 3, version 2, hash algo, key id, size)
    with deterministic bytes for the signature itself."""
    s = det("sig/" + label, 256)
    return bytes([3, 2, algo_id]) + det("keyid/" + label, 4) + struct.pack(">H", len(s)) + s


def mixed_entries():
    h256 = lambda lbl: hashlib.sha256(lbl.encode()).digest()
    cmdline = b"BOOT_IMAGE=/vmlinuz-6.8.0 root=UUID=1234 ro ima_policy=tcb"
    pod = "podd7f0c9a2_1b2c_4d5e_8f90_a1b2c3d4e5f6"
    ctr = hashlib.sha256(b"container").hexdigest()
    long_name = "/opt/" + "x" * 250  # 255 bytes: the longest the ima template allows
    return [
        Entry(10, "ima-ng", {"d-ng": ("sha256", h256("boot_aggregate")), "n-ng": "boot_aggregate"}),
        Entry(10, "ima-ng", {"d-ng": ("sha256", h256("/usr/lib/systemd/systemd")), "n-ng": "/usr/lib/systemd/systemd"}),
        Entry(10, "ima-ng", {"d-ng": ("sha1", hashlib.sha1(b"ld").digest()), "n-ng": "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"}),
        Entry(10, "ima", {"d": hashlib.sha1(b"legacy").digest(), "n": "/usr/bin/legacy_tool"}),
        Entry(10, "ima", {"d": hashlib.sha1(b"long").digest(), "n": long_name}),
        Entry(10, "ima-sig", {"d-ng": ("sha256", h256("/usr/bin/signed")), "n-ng": "/usr/bin/signed", "sig": sig_v2("signed")}),
        Entry(10, "ima-sig", {"d-ng": ("sha256", h256("/usr/bin/unsigned")), "n-ng": "/usr/bin/unsigned", "sig": b""}),
        # A violation: zero template hash, zero digest (ima_eventdigest_ng_init).
        Entry(10, "ima-ng", {"d-ng": ("sha256", b"\0" * 32), "n-ng": "/var/log/journal/system.journal"}, violation=True),
        Entry(10, "ima-buf", {"d-ng": ("sha256", hashlib.sha256(cmdline).digest()), "n-ng": "kexec-cmdline", "buf": cmdline}),
        Entry(10, "ima-ngv2", {"d-ngv2": ("ima", "sha256", h256("/usr/bin/ngv2")), "n-ng": "/usr/bin/ngv2"}),
        Entry(10, "ima-sigv2", {"d-ngv2": ("verity", "sha256", h256("/usr/bin/verity")), "n-ng": "/usr/bin/verity", "sig": sig_v2("verity")}),
        Entry(10, "ima-dep-cgn", {"dep": "/usr/bin/runc:/usr/bin/containerd-shim-runc-v2:/usr/lib/systemd/systemd:swapper/0",
                                  "cgn": "cri-containerd-" + ctr + ".scope",
                                  "d-ng": ("sha256", h256("/bin/sh")), "n-ng": "/bin/sh"}),
        Entry(10, "ima-cgpath", {"dep": "/usr/bin/containerd-shim-runc-v2:/usr/bin/containerd:/usr/lib/systemd/systemd:swapper/0",
                                 "cg-path": "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-" + pod + ".slice/cri-containerd-" + ctr + ".scope",
                                 "d-ng": ("sha384", hashlib.sha384(b"/app/server").digest()), "n-ng": "/app/server"}),
        Entry(11, "ima-ng", {"d-ng": ("sha256", h256("/etc/pcr11")), "n-ng": "/etc/pcr11"}),
        Entry(9, "ima-ng", {"d-ng": ("sha512", hashlib.sha512(b"pcr9").digest()), "n-ng": "/etc/pcr9"}),
        Entry(10, "ima-ng", {"d-ng": ("md5", hashlib.md5(b"old").digest()), "n-ng": "/usr/bin/md5_measured"}),
    ]


def cgpath_entries():
    """A CCNP-style list: ima_template=ima-cgpath ima_hash=sha384."""
    h384 = lambda lbl: hashlib.sha384(lbl.encode()).digest()
    out = [Entry(10, "ima-cgpath", {"dep": "swapper/0", "cg-path": "/",
                                    "d-ng": ("sha384", h384("boot_aggregate")), "n-ng": "boot_aggregate"})]
    host_dep = "/usr/lib/systemd/systemd:swapper/0"
    for p in ("/usr/bin/containerd", "/usr/bin/kubelet"):
        out.append(Entry(10, "ima-cgpath", {"dep": host_dep, "cg-path": "/system.slice/" + os.path.basename(p) + ".service",
                                            "d-ng": ("sha384", h384(p)), "n-ng": p}))
    for pod in ("pod11111111_2222_3333_4444_555555555555", "pod66666666_7777_8888_9999_000000000000"):
        ctr = hashlib.sha256(pod.encode()).hexdigest()
        cg = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-" + pod + ".slice/cri-containerd-" + ctr + ".scope"
        for p in ("/usr/local/bin/app", "/lib/libc.so.6"):
            out.append(Entry(10, "ima-cgpath", {"dep": "/usr/bin/containerd-shim-runc-v2:/usr/bin/containerd:/usr/lib/systemd/systemd:swapper/0",
                                                "cg-path": cg, "d-ng": ("sha384", h384(pod + p)), "n-ng": p}))
    out.append(Entry(10, "ima-cgpath", {"dep": host_dep, "cg-path": "-", "d-ng": ("sha384", b"\0" * 48),
                                        "n-ng": "/var/lib/kubelet/log"}, violation=True))
    return out


def with_thash(entries, thash, pcr=None):
    """The same entries from a kernel whose template hash is thash (and, for
    CCNP's TDX kernels, whose register field is the RTMR index)."""
    for e in entries:
        e.thash = thash
        if pcr is not None:
            e.pcr = pcr
    return entries


def main():
    expected = {}
    for name, entries, order in (("mixed", mixed_entries(), "<"), ("mixed-be", mixed_entries(), ">"),
                                 ("cgpath", cgpath_entries(), "<"),
                                 ("rtmr2-sha384", with_thash(cgpath_entries(), "sha384", 2), "<"),
                                 ("rtmr2-sha384-be", with_thash(cgpath_entries(), "sha384", 2), ">"),
                                 ("mixed-sha256", with_thash(mixed_entries(), "sha256"), "<"),
                                 ("mixed-sha256-be", with_thash(mixed_entries(), "sha256"), ">")):
        with open(os.path.join(HERE, name + ".ascii"), "w") as f:
            f.write("".join(e.ascii(order) for e in entries))
        with open(os.path.join(HERE, name + ".bin"), "wb") as f:
            f.write(b"".join(e.binary(order) for e in entries))
        expected[name] = {
            "byte_order": "little" if order == "<" else "big",
            "template_hash_alg": entries[0].thash,
            "entries": [e.expected(order) for e in entries],
            "pcrs": replay(entries, order),
        }
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
