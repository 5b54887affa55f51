"""The device cgroup of cgroup v2: an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE) attached to the
container's cgroup, as runc's devicefilter makes it. cgroup v2 has no devices.allow/deny files:
without a program every device node a process can make (CAP_MKNOD) is open to it.

The program gets the access's type (block 1, char 2), the access (mknod 1, read 2, write 4),
major and minor; it answers 1 (allow) or 0 (deny). The OCI rules are checked from the last to
the first, the first that matches deciding, as the later of two v1 rules wins: an allow rule
matches an access it covers whole, a deny rule one it overlaps; nothing matching is a deny
(the rules given here start with deny-all).
"""

from __future__ import annotations

import ctypes
import os
import struct

from berth.linux import syscalls as sc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

_BPF_NR = {"x86_64": 321, "aarch64": 280, "arm64": 280}
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2

_TYPES = {"b": 1, "c": 2}
_ACCESS = {"m": 1, "r": 2, "w": 4}

# eBPF opcodes used
_LDXW = 0x61       # dst = *(u32 *)(src + off)
_AND32_K = 0x54    # dst &= imm (32-bit)
_RSH32_K = 0x74    # dst >>= imm (32-bit)
_MOV32_X = 0xBC    # dst = src (32-bit)
_MOV64_K = 0xB7    # dst = imm
_JNE_K = 0x55      # if dst != imm: pc += off
_JNE_X = 0x5D      # if dst != src: pc += off
_JEQ_K = 0x15      # if dst == imm: pc += off
_EXIT = 0x95


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _access_bits(access: str | None) -> int:
    bits = 0
    for c in access or "rwm":
        bits |= _ACCESS.get(c, 0)
    return bits


def program(rules: Sequence[dict[str, Any]]) -> bytes:
    """The filter of the OCI device rules (linux.resources.devices), as eBPF instructions."""
    out = [
        _insn(_LDXW, dst=2, src=1, off=0), _insn(_AND32_K, dst=2, imm=0xFFFF),  # r2: the type
        _insn(_LDXW, dst=3, src=1, off=0), _insn(_RSH32_K, dst=3, imm=16),      # r3: the access
        _insn(_LDXW, dst=4, src=1, off=4),                                      # r4: major
        _insn(_LDXW, dst=5, src=1, off=8),                                      # r5: minor
    ]
    for rule in reversed(list(rules)):
        allow = bool(rule.get("allow"))
        typ = rule.get("type") or "a"
        access = _access_bits(rule.get("access"))
        major, minor = rule.get("major"), rule.get("minor")
        # the checks, each jumping past the block when they fail: (opcode, dst, src, imm)
        checks: list[tuple[int, int, int, int] | None] = []
        if typ != "a":
            checks.append((_JNE_K, 2, 0, _TYPES[typ]))
        if access != 7:
            checks.append(None)  # r1 = r3 & access (two instructions), then its test
            checks.append((_JNE_X, 1, 3, 0) if allow else (_JEQ_K, 1, 0, 0))
        if major is not None and major != -1:
            checks.append((_JNE_K, 4, 0, int(major)))
        if minor is not None and minor != -1:
            checks.append((_JNE_K, 5, 0, int(minor)))
        block: list[tuple[int, int, int, int] | bytes] = []
        for c in checks:
            if c is None:
                block += [_insn(_MOV32_X, dst=1, src=3), _insn(_AND32_K, dst=1, imm=access)]
            else:
                block.append(c)
        block += [_insn(_MOV64_K, dst=0, imm=1 if allow else 0), _insn(_EXIT)]
        n = len(block)
        for i, item in enumerate(block):
            if isinstance(item, tuple):  # a jump past the block's end
                code, dst, src, imm = item
                out.append(_insn(code, dst=dst, src=src, off=n - i - 1, imm=imm))
            else:
                out.append(item)
        if not checks:  # it matches everything: the earlier rules are never reached (the verifier
            return b"".join(out)  # refuses what cannot be reached)
    out += [_insn(_MOV64_K, dst=0, imm=0), _insn(_EXIT)]
    return b"".join(out)


class _ProgLoad(ctypes.Structure):
    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32), ("insns", ctypes.c_uint64),
                ("license", ctypes.c_uint64), ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32), ("prog_flags", ctypes.c_uint32),
                ("prog_name", ctypes.c_char * 16), ("prog_ifindex", ctypes.c_uint32),
                ("expected_attach_type", ctypes.c_uint32)]


class _ProgAttach(ctypes.Structure):
    _fields_ = [("target_fd", ctypes.c_uint32), ("attach_bpf_fd", ctypes.c_uint32),
                ("attach_type", ctypes.c_uint32), ("attach_flags", ctypes.c_uint32),
                ("replace_bpf_fd", ctypes.c_uint32)]


def _bpf(cmd: int, attr: ctypes.Structure) -> int:
    lib = sc._lib()
    nr = _BPF_NR.get(os.uname().machine)
    if nr is None:
        raise OSError(38, os.strerror(38))  # ENOSYS: an architecture this module does not know
    ret = lib.syscall(ctypes.c_long(nr), ctypes.c_long(cmd), ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def attach(cgroup_dir: str, rules: Sequence[dict[str, Any]]) -> None:
    """Load the rules' filter and attach it to the cgroup v2 directory (the attachment keeps it:
    it goes with the cgroup). OSError where the kernel refuses (the verifier's log in the message)."""
    code = program(rules)
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"Apache")
    log = ctypes.create_string_buffer(65536)
    attr = _ProgLoad(prog_type=BPF_PROG_TYPE_CGROUP_DEVICE, insn_cnt=len(code) // 8,
                     insns=ctypes.addressof(insns), license=ctypes.addressof(license_), log_level=1,
                     log_size=len(log), log_buf=ctypes.addressof(log), prog_name=b"berth_dev",
                     expected_attach_type=BPF_CGROUP_DEVICE)
    try:
        prog = _bpf(BPF_PROG_LOAD, attr)
    except OSError as e:
        why = log.value.decode(errors="replace").strip().splitlines()
        raise OSError(e.errno, f"{e.strerror}" + (f" ({why[-1]})" if why else "")) from None
    try:
        cg = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _bpf(BPF_PROG_ATTACH, _ProgAttach(target_fd=cg, attach_bpf_fd=prog, attach_type=BPF_CGROUP_DEVICE,
                                              attach_flags=BPF_F_ALLOW_MULTI))
        finally:
            os.close(cg)
    finally:
        os.close(prog)
