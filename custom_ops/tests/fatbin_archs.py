"""Lists the GPU code embedded in a shared library, per CUDA fat binary (one per .cu file).

    python fatbin_archs.py LIBRARY [--expect "75 80 90+PTX"]

Prints one line per fat binary: its ELF (SASS) targets as sm_XX and its PTX as compute_XX.
With --expect, exits 1 unless every fat binary holds sm_XX code for each entry and PTX for
each +PTX entry. Uses ``cuobjdump --list-elf/--list-ptx`` when it is on PATH; otherwise
reads the ``.nv_fatbin`` section itself (``objcopy``), since a cudart-only toolkit lacks
cuobjdump. Fat binary layout: a 16-byte header (magic 0xBA55ED50, u16 version, u16 header
size, u64 size) then entries, each a header (u16 kind: 1 PTX, 2 ELF; u16; u32 header size;
u64 payload size; ... u32 target at byte 28) and its payload.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

MAGIC = 0xBA55ED50
KIND_PTX, KIND_ELF = 1, 2


def parse_fatbin_section(data: bytes) -> list[tuple[set[int], set[int]]]:
    """``(elf_sms, ptx_sms)`` for each fat binary in a ``.nv_fatbin`` section's bytes."""
    binaries = []
    offset = 0
    while offset + 16 <= len(data):
        magic, _version, header_size, size = struct.unpack_from("<IHHQ", data, offset)
        if magic != MAGIC:
            offset += 8  # fat binaries are 8-byte aligned, padding between them
            continue
        elf, ptx = set(), set()
        entry, end = offset + header_size, offset + header_size + size
        while entry + 32 <= end:
            kind, _v, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
            (target,) = struct.unpack_from("<I", data, entry + 28)
            if kind == KIND_ELF:
                elf.add(target)
            elif kind == KIND_PTX:
                ptx.add(target)
            if entry_header == 0:
                break
            entry += entry_header + payload
        binaries.append((elf, ptx))
        offset = max(end, offset + 16)
    return binaries


def read_with_objcopy(library: str) -> list[tuple[set[int], set[int]]]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "fatbin")
        subprocess.run(["objcopy", "-O", "binary", "--only-section=.nv_fatbin", library, out],
                       check=True)
        with open(out, "rb") as f:
            return parse_fatbin_section(f.read())


def read_with_cuobjdump(cuobjdump: str, library: str) -> list[tuple[set[int], set[int]]]:
    """All fat binaries merged into one entry (cuobjdump lists files, not binaries)."""
    elf = subprocess.run([cuobjdump, "--list-elf", library], capture_output=True, text=True)
    ptx = subprocess.run([cuobjdump, "--list-ptx", library], capture_output=True, text=True)
    return [({int(m) for m in re.findall(r"\.sm_(\d+)\.cubin", elf.stdout)},
             {int(m) for m in re.findall(r"\.sm_(\d+)\.ptx", ptx.stdout)})]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library")
    parser.add_argument("--expect", default=None,
                        help='targets that must be present, e.g. "75 80 90+PTX"')
    args = parser.parse_args(argv)
    cuobjdump = shutil.which("cuobjdump")
    binaries = (read_with_cuobjdump(cuobjdump, args.library) if cuobjdump
                else read_with_objcopy(args.library))
    tool = "cuobjdump" if cuobjdump else ".nv_fatbin via objcopy"
    if not binaries:
        print(f"no CUDA fat binary in {args.library} ({tool})")
        return 1
    for i, (elf, ptx) in enumerate(binaries):
        print(f"fatbin {i}: " + " ".join([f"sm_{s}" for s in sorted(elf)]
                                         + [f"compute_{s}" for s in sorted(ptx)]) + f" ({tool})")
    if args.expect is None:
        return 0
    status = 0
    for entry in args.expect.split():
        sm = int(entry.split("+")[0])
        for i, (elf, ptx) in enumerate(binaries):
            if sm not in elf:
                print(f"MISSING sm_{sm} code in fatbin {i}")
                status = 1
            if entry.upper().endswith("+PTX") and sm not in ptx:
                print(f"MISSING compute_{sm} PTX in fatbin {i}")
                status = 1
    if status == 0:
        print(f"all {len(binaries)} fat binaries hold {args.expect}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
