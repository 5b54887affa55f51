"""seccomp filters from an OCI runtime-spec ``linux.seccomp`` object, through libseccomp.

The semantics follow runc (libcontainer/seccomp):

* a syscall name that libseccomp does not know is skipped silently (profiles such as
  docker's list syscalls that may not exist on this kernel/libseccomp);
* a rule whose action equals the default action is skipped (libseccomp refuses it);
* the args of one rule are ANDed into one libseccomp rule, unless two of them test the
  same argument index: then every arg becomes a rule of its own (OR semantics), because
  libseccomp refuses two comparisons of the same argument in one rule;
* SCMP_ACT_KILL is SCMP_ACT_KILL_THREAD; ERRNO and TRACE default to EPERM;
* no_new_privs is NOT forced by loading the filter (SCMP_FLTATR_CTL_NNP = 0): loading
  then needs CAP_SYS_ADMIN, or no_new_privs set by the caller beforehand;
* when several rules give different actions to the same unconditional syscall, the first
  one added wins (libseccomp keeps it and silently drops the later ones).

* SCMP_ACT_NOTIFY (seccomp user notification) as runc: not the default action, not on write(2)
  (the init reports the listener's fd to the runtime with a write after the load), and only with
  a listenerPath; the loaded Filter hands the notification fd to its ``on_notify`` callable
  (the runtime sends it to the agent at listenerPath, see berth.runtime.container).

Not supported: runc's patchbpf trick of returning ENOSYS for syscalls newer than the profile.

Usage::

    validate(spec)           # config check, no process change, no root needed
    f = compile(spec)        # early in the container init
    ...
    f.load()                 # the very last thing before execve

libseccomp.so.2 is loaded on first use, never at import time. All libseccomp calls
return a negative errno rather than setting errno.
"""

from __future__ import annotations

import ctypes
import os

from berth import fastjson as json
from berth.errors import FailedPrecondition, InvalidArgument, SystemError_, Unavailable

TYPE_CHECKING = False  # no typing at run time: container inits import this
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeGuard

LIBRARY = "libseccomp.so.2"

# The annotation runc's `features` command reports the library version under.
LIB_VERSION_ANNOTATION = "io.github.seccomp.libseccomp.version"

# Action values (seccomp.h). ERRNO and TRACE carry 16 bits of data.
_ACT_KILL_PROCESS = 0x80000000
_ACT_KILL_THREAD = 0x00000000
_ACT_TRAP = 0x00030000
_ACT_ERRNO = 0x00050000
_ACT_TRACE = 0x7FF00000
_ACT_LOG = 0x7FFC0000
_ACT_ALLOW = 0x7FFF0000
_ACT_NOTIFY = 0x7FC00000

# OCI action name -> (libseccomp value, takes errnoRet).
_ACTIONS = {
    "SCMP_ACT_KILL": (_ACT_KILL_THREAD, False),
    "SCMP_ACT_KILL_PROCESS": (_ACT_KILL_PROCESS, False),
    "SCMP_ACT_KILL_THREAD": (_ACT_KILL_THREAD, False),
    "SCMP_ACT_TRAP": (_ACT_TRAP, False),
    "SCMP_ACT_ERRNO": (_ACT_ERRNO, True),
    "SCMP_ACT_TRACE": (_ACT_TRACE, True),
    "SCMP_ACT_ALLOW": (_ACT_ALLOW, False),
    "SCMP_ACT_LOG": (_ACT_LOG, False),
    "SCMP_ACT_NOTIFY": (_ACT_NOTIFY, False),
}
_NOTIFY = "SCMP_ACT_NOTIFY"
# The libseccomp API level with user notification (libseccomp >= 2.5, Linux >= 5.7).
_NOTIFY_API = 6
_EPERM = 1
_MAX_RET = 0xFFFF  # SECCOMP_RET_DATA is 16 bits wide

# enum scmp_compare
_OPS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# OCI architecture name -> libseccomp architecture name (seccomp_arch_resolve_name).
_ARCHS = {
    "SCMP_ARCH_X86": "x86",
    "SCMP_ARCH_X86_64": "x86_64",
    "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_ARM": "arm",
    "SCMP_ARCH_AARCH64": "aarch64",
    "SCMP_ARCH_LOONGARCH64": "loongarch64",
    "SCMP_ARCH_M68K": "m68k",
    "SCMP_ARCH_MIPS": "mips",
    "SCMP_ARCH_MIPS64": "mips64",
    "SCMP_ARCH_MIPS64N32": "mips64n32",
    "SCMP_ARCH_MIPSEL": "mipsel",
    "SCMP_ARCH_MIPSEL64": "mipsel64",
    "SCMP_ARCH_MIPSEL64N32": "mipsel64n32",
    "SCMP_ARCH_PPC": "ppc",
    "SCMP_ARCH_PPC64": "ppc64",
    "SCMP_ARCH_PPC64LE": "ppc64le",
    "SCMP_ARCH_S390": "s390",
    "SCMP_ARCH_S390X": "s390x",
    "SCMP_ARCH_PARISC": "parisc",
    "SCMP_ARCH_PARISC64": "parisc64",
    "SCMP_ARCH_RISCV64": "riscv64",
    "SCMP_ARCH_SH": "sh",
    "SCMP_ARCH_SHEB": "sheb",
}

# enum scmp_filter_attr
_ATTR_CTL_NNP = 3
_ATTR_CTL_TSYNC = 4
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_ATTR_CTL_OPTIMIZE = 8
_ATTR_API_SYSRAWRC = 9

# OCI flag -> libseccomp attribute (set to 1).
_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": _ATTR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": _ATTR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _ATTR_CTL_SSB,
}

_MAX_ARGS = 6
_U64 = (1 << 64) - 1
_NR_SCMP_ERROR = -1
# Like runc: above this many syscall entries, ask for a binary-tree filter.
_OPTIMIZE_ABOVE = 32


class _ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),  # enum scmp_compare
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


class _Version(ctypes.Structure):
    """struct scmp_version."""

    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


_lib_handle: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    """libseccomp, loaded and declared on first use."""
    global _lib_handle
    if _lib_handle is not None:
        return _lib_handle
    try:
        lib = ctypes.CDLL(LIBRARY, use_errno=True)
    except OSError as e:
        raise Unavailable(f"seccomp: cannot load {LIBRARY}: {e}") from None
    ctx = ctypes.c_void_p  # scmp_filter_ctx; restype/argtypes must say so or it is truncated to int
    u32 = ctypes.c_uint32
    c_int = ctypes.c_int
    decl = [
        ("seccomp_init", ctx, [u32]),
        ("seccomp_release", None, [ctx]),
        ("seccomp_load", c_int, [ctx]),
        ("seccomp_attr_set", c_int, [ctx, c_int, u32]),
        ("seccomp_arch_resolve_name", u32, [ctypes.c_char_p]),
        ("seccomp_arch_native", u32, []),
        ("seccomp_arch_add", c_int, [ctx, u32]),
        ("seccomp_syscall_resolve_name", c_int, [ctypes.c_char_p]),
        ("seccomp_rule_add_array", c_int, [ctx, u32, c_int, ctypes.c_uint, ctypes.POINTER(_ArgCmp)]),
        ("seccomp_export_pfc", c_int, [ctx, c_int]),
        ("seccomp_export_bpf", c_int, [ctx, c_int]),
        ("seccomp_version", ctypes.POINTER(_Version), []),
        ("seccomp_api_get", ctypes.c_uint, []),
        ("seccomp_notify_fd", c_int, [ctx]),
    ]
    try:
        for name, restype, argtypes in decl:
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
    except AttributeError as e:
        raise Unavailable(f"seccomp: {LIBRARY} is too old: {e}") from None
    _lib_handle = lib
    return lib


def _q(value: Any) -> str:
    """A value quoted for a one-line message."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _bad(msg: str) -> InvalidArgument:
    return InvalidArgument("seccomp: " + msg)


def _is_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _action(name: Any, errno_ret: Any, where: str, ret_key: str) -> int:
    """The libseccomp action value for an OCI action name and optional errnoRet."""
    if not isinstance(name, str):
        raise _bad(f"action must be a string, got {_q(name)} in {where}")
    try:
        value, takes_ret = _ACTIONS[name]
    except KeyError:
        raise _bad(f"unknown action {_q(name)} in {where}") from None
    if errno_ret is None:
        return value | _EPERM if takes_ret else value
    if not _is_int(errno_ret) or not 0 <= errno_ret <= _MAX_RET:
        raise _bad(f"invalid {ret_key} {_q(errno_ret)} in {where} (must be 0..{_MAX_RET})")
    if not takes_ret:
        raise _bad(f"{ret_key} is not supported with action {_q(name)} in {where}")
    return value | errno_ret


def _list(spec: dict[str, Any], key: str, where: str) -> list[Any]:
    v = spec.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise _bad(f"{where}{key} must be a list, got {_q(v)}")
    return v


def _parse(spec: Any) -> tuple[Any, ...]:
    """Check the whole spec without libseccomp; return a plan for _build."""
    if not isinstance(spec, dict):
        raise _bad(f"expected an object, got {type(spec).__name__}")
    for key in ("listenerPath", "listenerMetadata"):
        if not isinstance(spec.get(key, ""), str):
            raise _bad(f"{key} must be a string, got {_q(spec[key])}")

    if "defaultAction" not in spec:
        raise _bad("defaultAction is required")
    if spec["defaultAction"] == _NOTIFY:  # runc's words: the write that reports the fd would wait on itself
        raise InvalidArgument("SCMP_ACT_NOTIFY cannot be used as default action")
    default = _action(spec["defaultAction"], spec.get("defaultErrnoRet"), "defaultAction", "defaultErrnoRet")

    archs = []
    for a in _list(spec, "architectures", ""):
        if a not in _ARCHS:
            raise _bad(f"unknown architecture {_q(a)}")
        archs.append(a)

    flags = []
    for f in _list(spec, "flags", ""):
        if f not in _FLAGS:
            raise _bad(f"unknown flag {_q(f)}")
        flags.append(f)

    rules = []  # (names, action, [[(arg, op, a, b), ...] per libseccomp rule] or [[]])
    for i, call in enumerate(_list(spec, "syscalls", "")):
        where = f"syscalls[{i}]"
        if not isinstance(call, dict):
            raise _bad(f"{where} must be an object, got {_q(call)}")
        names = call.get("names")
        if not isinstance(names, list) or not names:
            raise _bad(f"{where}: names must be a non-empty list, got {_q(names)}")
        for n in names:
            if not isinstance(n, str) or not n:
                raise _bad(f"invalid syscall name {_q(n)} in {where}")
        if "action" not in call:
            raise _bad(f"{where}: action is required")
        action = _action(call["action"], call.get("errnoRet"), where, "errnoRet")
        if action == _ACT_NOTIFY and "write" in names:
            raise InvalidArgument("SCMP_ACT_NOTIFY cannot be used for the write syscall")  # runc's words

        conds: list[tuple[int, int, int, int]] = []
        counts = [0] * _MAX_ARGS
        for j, arg in enumerate(_list(call, "args", f"{where}.")):
            awhere = f"{where}.args[{j}]"
            if not isinstance(arg, dict):
                raise _bad(f"{awhere} must be an object, got {_q(arg)}")
            index = arg.get("index")
            if not _is_int(index) or not 0 <= index < _MAX_ARGS:
                raise _bad(f"invalid argument index {_q(index)} in {awhere} (must be 0..{_MAX_ARGS - 1})")
            op = arg.get("op")
            if op not in _OPS:
                raise _bad(f"unknown operator {_q(op)} in {awhere}")
            value = arg.get("value", 0)
            value_two = arg.get("valueTwo", 0)
            for key, v in (("value", value), ("valueTwo", value_two)):
                if not _is_int(v) or not 0 <= v <= _U64:
                    raise _bad(f"invalid {key} {_q(v)} in {awhere} (must be a uint64)")
            counts[index] += 1
            conds.append((index, _OPS[op], value, value_two))
        groups: list[list[tuple[int, int, int, int]]]
        if not conds:
            groups = [[]]
        elif max(counts) > 1:
            groups = [[c] for c in conds]  # runc: same index twice -> one rule per arg (OR)
        else:
            groups = [conds]  # one rule, args ANDed
        if action == default:
            continue  # redundant; libseccomp would refuse it (EACCES)
        rules.append((names, action, groups))
    if any(action == _ACT_NOTIFY for _, action, _ in rules) and not spec.get("listenerPath"):
        raise InvalidArgument("listenerPath is not set")  # runc's words (it finds out after the load)
    return (spec["defaultAction"], default), archs, flags, rules


def _strerror(rc: int) -> str:
    return os.strerror(-rc) if rc < 0 else f"error {rc}"


def _notifies(plan: tuple[Any, ...]) -> bool:
    """Whether a plan has an SCMP_ACT_NOTIFY rule (the filter then has a listener fd)."""
    return any(action == _ACT_NOTIFY for _, action, _ in plan[3])


def _build(plan: tuple[Any, ...]) -> tuple[ctypes.CDLL, int, list[str]]:
    """Create the libseccomp context for a plan; return (lib, ctx, skipped names)."""
    (default_name, default), archs, flags, rules = plan
    lib = _lib()
    if _notifies(plan):
        level = lib.seccomp_api_get()
        if level < _NOTIFY_API:  # runc's words
            raise Unavailable(f"seccomp notify unsupported: API level: got {level}, want at least {_NOTIFY_API}. "
                              "Please try with libseccomp >= 2.5.0 and Linux >= 5.7")
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise _bad(f"default action {_q(default_name)} is not supported by libseccomp or the kernel")
    try:
        rc = lib.seccomp_attr_set(ctx, _ATTR_CTL_NNP, 0)
        if rc:
            raise SystemError_(f"seccomp: cannot clear the no_new_privs attribute: {_strerror(rc)}")
        # Real kernel errors from seccomp_load instead of ECANCELED (libseccomp >= 2.5).
        lib.seccomp_attr_set(ctx, _ATTR_API_SYSRAWRC, 1)

        for a in archs:
            token = lib.seccomp_arch_resolve_name(_ARCHS[a].encode())
            if not token:
                raise _bad(f"architecture {_q(a)} is not supported by this libseccomp")
            rc = lib.seccomp_arch_add(ctx, token)
            if rc and rc != -17:  # -EEXIST: already there (the native one, or listed twice)
                raise _bad(f"cannot add architecture {_q(a)}: {_strerror(rc)}")

        for f in flags:
            # EINVAL: this libseccomp lacks the attribute; EOPNOTSUPP: the kernel lacks the flag.
            lib.seccomp_attr_set(ctx, _FLAGS[f], 1)

        skipped: list[str] = []
        resolve = lib.seccomp_syscall_resolve_name
        add = lib.seccomp_rule_add_array
        count = 0
        for names, action, groups in rules:
            for name in names:
                try:
                    nr = resolve(name.encode("ascii")) if "\0" not in name else _NR_SCMP_ERROR
                except UnicodeEncodeError:
                    nr = _NR_SCMP_ERROR
                if nr == _NR_SCMP_ERROR:
                    skipped.append(name)
                    continue
                count += 1
                for conds in groups:
                    n = len(conds)
                    arr = (_ArgCmp * n)(*[_ArgCmp(*c) for c in conds]) if n else None
                    rc = add(ctx, action, nr, n, arr)
                    if rc:
                        msg = f"cannot add rule for syscall {_q(name)}: {_strerror(rc)}"
                        if rc == -12:  # ENOMEM
                            raise SystemError_("seccomp: " + msg)
                        raise _bad(msg)
        if count > _OPTIMIZE_ABOVE:
            # libseccomp <= 2.5.4 misbehaves with the binary tree and no rules; fine here.
            lib.seccomp_attr_set(ctx, _ATTR_CTL_OPTIMIZE, 2)
    except BaseException:
        lib.seccomp_release(ctx)
        raise
    return lib, ctx, skipped


class Filter:
    """A compiled, not yet loaded, seccomp filter (a libseccomp context).

    notify: the filter has SCMP_ACT_NOTIFY rules; its load() then calls on_notify with the
    notification (listener) fd, which it must hand on before the process makes a notified call."""

    __slots__ = ("_ctx", "_load", "_release", "_lib", "skipped", "notify", "on_notify")
    _ctx: int | None

    def __init__(self, lib: ctypes.CDLL, ctx: int, skipped: list[str], notify: bool = False) -> None:
        self._lib = lib
        self._ctx = ctx
        self._load = lib.seccomp_load
        self._release = lib.seccomp_release
        self.skipped = skipped  # syscall names this libseccomp does not know (ignored)
        self.notify = notify
        self.on_notify: Callable[[int], None] | None = None

    def load(self) -> None:
        """Install the filter in the calling process (seccomp_load). Keep this lean."""
        rc = self._load(self._ctx)
        if rc:
            self._load_failed(rc)
        if self.notify:
            fd = self._lib.seccomp_notify_fd(self._ctx)
            if fd < 0:
                raise SystemError_(f"seccomp: no notification fd after the load: {_strerror(fd)}")
            if self.on_notify is None:
                os.close(fd)
                raise FailedPrecondition("seccomp: nobody to hand the notification fd to")
            self.on_notify(fd)

    def _load_failed(self, rc: int) -> None:
        if self._ctx is None:
            raise FailedPrecondition("seccomp: the filter was released")
        msg = f"seccomp: loading the filter failed: {_strerror(rc)}"
        if rc == -13:  # EACCES
            msg += " (needs CAP_SYS_ADMIN or no_new_privs)"
        raise SystemError_(msg)

    def release(self) -> None:
        """Free the libseccomp context; idempotent. An installed filter stays installed."""
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            self._release(ctx)

    def export_pfc(self) -> str:
        """The filter as libseccomp's human-readable pseudo filter code (for debugging)."""
        return self._export(self._lib.seccomp_export_pfc).decode("utf-8", "replace")

    def export_bpf(self) -> bytes:
        """The raw BPF program (struct sock_filter array) libseccomp would load."""
        return self._export(self._lib.seccomp_export_bpf)

    def _export(self, fn: Callable[[int, int], int]) -> bytes:
        if self._ctx is None:
            raise FailedPrecondition("seccomp: the filter was released")
        fd = os.memfd_create("berth-seccomp", os.MFD_CLOEXEC)
        try:
            rc = fn(self._ctx, fd)
            if rc:
                raise SystemError_(f"seccomp: exporting the filter failed: {_strerror(rc)}")
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def __enter__(self) -> Filter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def validate(spec: dict[str, Any]) -> None:
    """Check a linux.seccomp object; raise InvalidArgument naming the bad value.

    Builds (and frees) the libseccomp context too, so everything short of loading is
    checked. Needs no privilege and does not change the process.
    """
    lib, ctx, _ = _build(_parse(spec))
    lib.seccomp_release(ctx)


def compile(spec: dict[str, Any]) -> Filter:  # noqa: A001 - the name other modules call
    """Validate a linux.seccomp object and build its filter; load it with .load()."""
    plan = _parse(spec)
    return Filter(*_build(plan), notify=_notifies(plan))


def resolve_syscall(name: str) -> int | None:
    """The native syscall number of name, or None if this libseccomp/arch lacks it."""
    nr = _lib().seccomp_syscall_resolve_name(name.encode())
    return nr if nr >= 0 else None


def version() -> str:
    """The libseccomp version, e.g. "2.5.4"."""
    v = _lib().seccomp_version().contents
    return f"{v.major}.{v.minor}.{v.micro}"


def features() -> dict[str, Any]:
    """The runtime-spec features.json "seccomp" object (plus "lib": the libseccomp version).

    runc reports the version as the annotation LIB_VERSION_ANNOTATION; pop "lib" into
    the annotations before emitting features.json.
    """
    try:
        lib = _lib()
    except Unavailable:
        return {"enabled": False}
    actions = []
    for name, (value, takes_ret) in _ACTIONS.items():
        ctx = lib.seccomp_init(value | _EPERM if takes_ret else value)
        if ctx:  # NULL when libseccomp or the kernel lacks the action
            lib.seccomp_release(ctx)
            actions.append(name)
    archs = [a for a, n in _ARCHS.items() if lib.seccomp_arch_resolve_name(n.encode())]
    supported = []
    ctx = lib.seccomp_init(_ACT_ALLOW)
    if ctx:
        try:
            for f, attr in _FLAGS.items():
                if lib.seccomp_attr_set(ctx, attr, 1) == 0:
                    supported.append(f)
        finally:
            lib.seccomp_release(ctx)
    return {
        "enabled": True,
        "actions": sorted(actions),
        "operators": sorted(_OPS),
        "archs": sorted(archs),
        "knownFlags": list(_FLAGS),
        "supportedFlags": supported,
        "lib": version(),
    }


# --- compiled programs, shared by forks ---------------------------------------------------------
# Generating the BPF for a large profile with its sub-architectures (x86_64 + x86 + x32) takes
# ~10 ms. berthd's zygote compiles the default profile once; every shim and container init forked
# from it finds the program here and installs it with one prctl.

_PROGRAMS: dict[str, bytes] = {}


def _key(spec: dict[str, Any]) -> str:
    import hashlib
    import json as stdjson  # sort_keys; only called when a program was precompiled (in berthd's forks)
    return hashlib.sha256(stdjson.dumps(spec, sort_keys=True).encode()).hexdigest()


class Program:
    """A compiled filter as raw BPF, loaded with prctl(PR_SET_SECCOMP) (never one that notifies)."""

    __slots__ = ("bpf",)
    notify = False

    def __init__(self, bpf: bytes) -> None:
        self.bpf = bpf

    def load(self) -> None:
        from berth.linux import syscalls
        try:
            syscalls.seccomp_load_bpf(self.bpf)
        except OSError as e:
            msg = f"seccomp: loading the filter failed: {e.strerror}"
            if e.errno == 13:
                msg += " (needs CAP_SYS_ADMIN or no_new_privs)"
            raise SystemError_(msg) from None

    def release(self) -> None:
        pass


def precompile(spec: dict[str, Any]) -> None:
    """Compile spec now and keep its program for processes forked later."""
    if spec.get("flags"):
        return  # flags need seccomp(2) with flags; those profiles take the libseccomp path
    f = compile(spec)
    if f.notify:  # its listener fd comes from seccomp(2)'s NEW_LISTENER flag: the libseccomp path too
        f.release()
        return
    try:
        _PROGRAMS[_key(spec)] = f.export_bpf()
    finally:
        f.release()


def compile_cached(spec: dict[str, Any]) -> Program | Filter:
    """A precompiled Program for spec when there is one, else a libseccomp Filter."""
    if _PROGRAMS and not spec.get("flags"):
        bpf = _PROGRAMS.get(_key(spec))
        if bpf is not None:
            return Program(bpf)
    return compile(spec)
