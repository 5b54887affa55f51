"""Every request is checked here, at the API edge, before any service runs: the API version in
the path, the query parameters and the JSON body of each route (types, ranges, sizes), against
the declarative schemas at the end of this module (ROUTES, keyed by method and route).

A bad request is a 400 that names the field and says what was wrong, e.g.
``invalid value for "HostConfig.Memory": expected an integer, got string``; a JSON body beyond
MAX_JSON_BODY is a 413. Fields a schema does not name pass through (as dockerd ignores unknown
fields); values are not rewritten: handlers read the request as before, now known to be sane.
Archive, load and import bodies are streams: they are not read here.
"""

from __future__ import annotations

import json
import re

from berth.errors import BerthError, InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from collections.abc import Collection, Mapping
    from typing import Any

    from aiohttp import web
    from multidict import MultiMapping

MAX_JSON_BODY = 4 << 20  # bytes: a container's config is a few KiB
MAX_QUERY_VALUE = 8192  # characters of one query parameter
MAX_PATH_PARAM = 1024  # characters of an id or a name in the path
MAX_NAME = 1024  # characters of an image reference, a container or network name
QUOTE = 64  # characters of a bad value quoted in an error


class TooLarge(BerthError):
    http_status = 413


def _show(v: Any) -> str:
    """A bad value for a message: a prefix of it, never all of a long one."""
    if isinstance(v, str):
        s = v if len(v) <= QUOTE else v[:QUOTE] + f"...({len(v)} characters)"
        return json.dumps(s)
    s = json.dumps(v) if not isinstance(v, (dict, list)) else _kind(v)
    return s if len(s) <= QUOTE else s[:QUOTE] + "..."


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def bad(field: str, why: str) -> InvalidArgument:
    return InvalidArgument(f'invalid value for "{field}": {why}')


# --- value types (JSON bodies) ----------------------------------------------------------------

class T:
    """A type of a JSON value; check(v, field) raises InvalidArgument."""
    nullable = True  # null means "not set" (as Go's zero values), unless a schema says otherwise

    def check(self, v: Any, field: str) -> None:
        raise NotImplementedError

    def __call__(self, v: Any, field: str) -> None:
        if v is None:
            if not self.nullable:
                raise bad(field, "must not be null")
            return
        self.check(v, field)


class Int(T):
    def __init__(self, lo: int = -(1 << 63), hi: int = (1 << 63) - 1, why: str | None = None, zero_ok: bool = False,
                 nullable: bool = True, bare: bool = False) -> None:
        self.lo, self.hi, self.why, self.zero_ok, self.nullable = lo, hi, why, zero_ok, nullable
        self.bare = bare  # why is dockerd's whole sentence though it starts in lower case

    def check(self, v: Any, field: str) -> None:
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            else:
                raise bad(field, f"expected an integer, got {_kind(v)}" +
                          (f" {_show(v)}" if isinstance(v, (str, float)) else ""))
        if v == 0 and self.zero_ok:
            return
        if not self.lo <= v <= self.hi:
            if self.why and (self.bare or self.why[:1].isupper() or "{v}" in self.why):
                # dockerd's own sentence (it names the setting): word for word, as clients compare it
                raise InvalidArgument(self.why.format(v=v))
            raise bad(field, self.why or f"{v} is out of range [{self.lo}, {self.hi}]")


class Num(T):
    def check(self, v: Any, field: str) -> None:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise bad(field, f"expected a number, got {_kind(v)}")


class Bool(T):
    def check(self, v: Any, field: str) -> None:
        if not isinstance(v, bool):
            raise bad(field, f"expected a boolean, got {_kind(v)}")


class Str(T):
    def __init__(self, max: int = 65536, pattern: str | None = None, choices: Collection[str] | None = None,
                 why: str | None = None, nullable: bool = True) -> None:
        self.max, self.choices, self.why, self.nullable = max, choices, why, nullable
        self.pattern = re.compile(pattern) if pattern else None

    def check(self, v: Any, field: str) -> None:
        if not isinstance(v, str):
            raise bad(field, f"expected a string, got {_kind(v)}")
        if len(v) > self.max:
            raise bad(field, f"longer than {self.max} characters")
        if "\x00" in v:
            raise bad(field, "contains a NUL character")
        if self.choices is not None and v not in self.choices:
            raise bad(field, self.why or f"{_show(v)} is not one of {', '.join(sorted(c for c in self.choices if c))}")
        if self.pattern is not None and v and not self.pattern.fullmatch(v):
            raise bad(field, self.why or f"{_show(v)} is not valid")


class List(T):
    def __init__(self, of: T, max: int = 65536, length: int | None = None) -> None:
        self.of, self.max, self.length = of, max, length

    def check(self, v: Any, field: str) -> None:
        if not isinstance(v, list):
            raise bad(field, f"expected an array, got {_kind(v)}")
        if len(v) > self.max:
            raise bad(field, f"more than {self.max} items")
        if self.length is not None and len(v) != self.length:
            raise bad(field, f"expected {self.length} items, got {len(v)}")
        for i, x in enumerate(v):
            self.of(x, f"{field}[{i}]")


class StrSlice(T):
    """docker's strslice: a string or an array of strings (Cmd, Entrypoint), each as long as the
    body allows (the kernel's exec refuses what it cannot pass, as under dockerd)."""

    def check(self, v: Any, field: str) -> None:
        if isinstance(v, str):
            _ARG(v, field)
        elif isinstance(v, list):
            List(_ARG)(v, field)
        else:
            raise bad(field, f"expected a string or an array of strings, got {_kind(v)}")


# an argument or an environment variable of a process: no length of its own (dockerd sets none);
# the body's bound holds them, the exec gives E2BIG past what the kernel passes
_ARG = Str(MAX_JSON_BODY)


class Map(T):
    """An object whose keys are free (labels, options): each value of type `of`."""

    def __init__(self, of: T, max: int = 65536, key_max: int = 4096) -> None:
        self.of, self.max, self.key_max = of, max, key_max

    def check(self, v: Any, field: str) -> None:
        if not isinstance(v, dict):
            raise bad(field, f"expected an object, got {_kind(v)}")
        if len(v) > self.max:
            raise bad(field, f"more than {self.max} entries")
        for k, x in v.items():
            if len(k) > self.key_max:
                raise bad(field, f"a key is longer than {self.key_max} characters")
            self.of(x, f"{field}.{k if len(k) <= QUOTE else k[:QUOTE] + '...'}")


class Obj(T):
    """An object with named fields (others are ignored, as dockerd does)."""

    def __init__(self, fields: Mapping[str, T] | None = None, required: Collection[str] = (), nullable: bool = True,
                 **kw: T) -> None:
        self.fields = dict(fields or {}, **kw)
        self.required, self.nullable = required, nullable

    def check(self, v: Any, field: str) -> None:
        if not isinstance(v, dict):
            raise bad(field or "body", f"expected an object, got {_kind(v)}")
        for k in self.required:
            if v.get(k) in (None, ""):
                raise bad(f"{field}.{k}" if field else k, "is required")
        for k, t in self.fields.items():
            if k in v:
                t(v[k], f"{field}.{k}" if field else k)


class AnyJSON(T):
    def check(self, v: Any, field: str) -> None:
        pass


# --- query parameters (strings) ----------------------------------------------------------------

class Q:
    """A query parameter: check(s, name) raises InvalidArgument; multi: repeated values allowed."""
    multi = False

    def __init__(self, required: bool = False, multi: bool = False, max: int = MAX_QUERY_VALUE) -> None:
        self.required, self.multi, self.max = required, multi, max

    def check(self, s: str, name: str) -> None:
        pass

    def __call__(self, values: list[str], name: str) -> None:
        if not values:
            if self.required:
                raise bad(name, "is required")
            return
        if len(values) > 1 and not self.multi:
            values = values[-1:]
        for s in values:
            if len(s) > self.max:
                raise bad(name, f"longer than {self.max} characters")
            if "\x00" in s:
                raise bad(name, "contains a NUL character")
            if s == "" and not self.required:
                continue
            self.check(s, name)


class QStr(Q):
    def __init__(self, choices: Collection[str] | None = None, pattern: str | None = None, why: str | None = None,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.choices, self.why = choices, why
        self.pattern = re.compile(pattern) if pattern else None

    def check(self, s: str, name: str) -> None:
        if s == "" and self.required:
            raise bad(name, "is required")
        if self.choices is not None and s not in self.choices:
            raise bad(name, self.why or f"{_show(s)} is not one of {', '.join(sorted(c for c in self.choices if c))}")
        if self.pattern is not None and not self.pattern.fullmatch(s):
            raise bad(name, self.why or f"{_show(s)} is not valid")


class QBool(Q):
    """dockerd's BoolValue: "", 0, no, false, none are false, anything else true."""


class QInt(Q):
    def __init__(self, lo: int = -(1 << 63), hi: int = (1 << 63) - 1, words: Collection[str] = (), empty: bool = True,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.lo, self.hi, self.words, self.empty = lo, hi, words, empty

    def __call__(self, values: list[str], name: str) -> None:
        if not self.empty and "" in values:
            raise bad(name, 'expected an integer, got ""')
        super().__call__(values, name)

    def check(self, s: str, name: str) -> None:
        if s in self.words:
            return
        try:
            v = int(s, 10)
        except ValueError:
            raise bad(name, f"expected an integer{' or ' + ' or '.join(self.words) if self.words else ''}, "
                            f"got {_show(s)}") from None
        if not self.lo <= v <= self.hi:
            raise bad(name, f"{v} is out of range [{self.lo}, {self.hi}]")


_NUM = re.compile(r"[0-9]+(\.[0-9]+)?")
_RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})?")


class QTime(Q):
    """A point in time: Unix seconds (with a fraction); rfc3339 also an RFC 3339 time."""

    def __init__(self, rfc3339: bool = False, **kw: Any) -> None:
        super().__init__(**kw)
        self.rfc3339 = rfc3339

    def check(self, s: str, name: str) -> None:
        if _NUM.fullmatch(s) or (self.rfc3339 and _RFC3339.fullmatch(s)):
            return
        raise bad(name, f"expected a Unix timestamp{' or an RFC 3339 time' if self.rfc3339 else ''}, got {_show(s)}")


class QFilters(Q):
    """docker's filters: {"key": ["value", ...]} or {"key": {"value": true}}."""

    def check(self, s: str, name: str) -> None:
        try:
            f = json.loads(s)
        except (ValueError, RecursionError):
            raise bad(name, f"not JSON: {_show(s)}") from None
        if not isinstance(f, dict):
            raise bad(name, f"expected a JSON object, got {_kind(f)}")
        for k, v in f.items():
            if isinstance(v, list):
                for x in v:
                    if not isinstance(x, str):
                        raise bad(f"{name}.{k[:QUOTE]}", f"expected strings, got {_kind(x)}")
            elif isinstance(v, dict):
                for x, on in v.items():
                    if not isinstance(on, bool):
                        raise bad(f"{name}.{k[:QUOTE]}.{x[:QUOTE]}", f"expected a boolean, got {_kind(on)}")
            else:
                raise bad(f"{name}.{k[:QUOTE]}", f"expected an array of strings, got {_kind(v)}")


class QJSON(Q):
    """A JSON value in a query parameter: an object of strings (buildargs, labels), unless told
    another shape (of berth.api.validate's types)."""

    def __init__(self, shape: T | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.shape = shape

    def check(self, s: str, name: str) -> None:
        try:
            v = json.loads(s)
        except (ValueError, RecursionError):
            raise bad(name, f"not JSON: {_show(s)}") from None
        (self.shape or Map(Str()))(v, name)


# --- routes -------------------------------------------------------------------------------------

class Route:
    def __init__(self, query: dict[str, Q] | None = None, body: T | None = None, body_optional: bool = False,
                 stream: bool = False) -> None:
        self.query = query or {}
        self.body = body  # a T for a JSON body; None: no JSON body is read
        self.body_optional = body_optional
        self.stream = stream  # the body is a stream (tar): not read here


def check_version(v: str, min_version: str, max_version: str) -> None:
    """The API version of a /vX.Y/ path, as dockerd checks it."""
    def key(s: str) -> tuple[int, int]:
        a, _, b = s.partition(".")
        return int(a), int(b or 0)
    if key(v) < key(min_version):
        raise InvalidArgument(f"client version {v} is too old. Minimum supported API version is {min_version}, "
                              f"please upgrade your client to a newer version")
    if key(v) > key(max_version):
        raise InvalidArgument(f"client version {v} is too new. Maximum supported API version is {max_version}")


def check_path(match_info: Mapping[str, str]) -> None:
    for k, v in match_info.items():
        if k.startswith("_"):
            continue
        if len(v) > MAX_PATH_PARAM:
            raise bad(k, f"longer than {MAX_PATH_PARAM} characters")
        if "\x00" in v:
            raise bad(k, "contains a NUL character")


def check_query(query: MultiMapping[str], spec: Mapping[str, Q]) -> None:
    for name, q in spec.items():
        q(query.getall(name, []), name)


def parse_json(raw: bytes, route: Route) -> Any:
    """The JSON body: parsed, of bounded size and depth."""
    if not raw.strip():
        if route.body_optional:
            return None
        raise InvalidArgument("request body is required (a JSON object)")
    try:
        return json.loads(raw)
    except RecursionError:
        raise InvalidArgument("request body is not valid JSON: nested too deeply") from None
    except ValueError as e:  # includes bad UTF-8
        why = str(e).splitlines()[0][:200] if not isinstance(e, UnicodeDecodeError) else "not UTF-8"
        raise InvalidArgument(f"request body is not valid JSON: {why}") from None


def check_body(value: Any, route: Route) -> None:
    if value is None and route.body_optional:
        return
    route.body(value, "")  # type: ignore[misc]  # called for a route with a body only


async def check(request: web.Request, route: Route | None, min_version: str, max_version: str) -> None:
    """Everything about a request that can be checked before its handler runs."""
    v = request.match_info.get("_api_version")
    if v is not None:
        check_version(v, min_version, max_version)
    check_path(request.match_info)
    if route is None:
        return
    check_query(request.query, route.query)
    if route.body is not None:
        n = request.content_length
        if n is not None and n > MAX_JSON_BODY:
            raise TooLarge(f"request body too large: {n} bytes (a JSON body may have at most {MAX_JSON_BODY})")
        raw = await request.read()  # bounded by the app's client_max_size (413 beyond)
        if raw.strip():
            check_json_type(request.headers.get("Content-Type", ""))
        check_body(parse_json(raw, route), route)


def check_json_type(ct: str) -> None:
    """A JSON body must say so (dockerd's CheckForJSON): its media type application/json, whatever
    its parameters (charset=utf-8)."""
    kind = ct.partition(";")[0].strip().lower()
    if kind != "application/json":
        raise InvalidArgument(f"Content-Type specified ({ct}) must be 'application/json'")


# --- the schemas --------------------------------------------------------------------------------

MB = 1 << 20
_ENV = List(_ARG)
_STRMAP = Map(Str())
_PLATFORM = QStr(pattern=r"[a-zA-Z0-9_.-]+(/[a-zA-Z0-9_.-]+){0,2}", max=256)
_BOOL = QBool()
_FILTERS = QFilters()
_NS = 10 ** 9

_HEALTH = Obj(Test=StrSlice(), Interval=Int(10 ** 6, why="Interval in Healthcheck cannot be less than 1ms", zero_ok=True),
              Timeout=Int(10 ** 6, why="Timeout in Healthcheck cannot be less than 1ms", zero_ok=True),
              StartPeriod=Int(10 ** 6, why="StartPeriod in Healthcheck cannot be less than 1ms", zero_ok=True),
              StartInterval=Int(0), Retries=Int(0, why="Retries in Healthcheck cannot be negative"))

_DEVICE = Obj(PathOnHost=Str(4096), PathInContainer=Str(4096), CgroupPermissions=Str(16, pattern="[rwm]+"))
_WEIGHT_DEVICE = Obj(Path=Str(4096), Weight=Int(0, 1000))
_RATE_DEVICE = Obj(Path=Str(4096), Rate=Int(0))
_MOUNT = Obj(Target=Str(4096), Source=Str(4096), Type=Str(32), ReadOnly=Bool(), Consistency=Str(32),
             BindOptions=Obj(Propagation=Str(32), NonRecursive=Bool(), CreateMountpoint=Bool(),
                             ReadOnlyNonRecursive=Bool(), ReadOnlyForceRecursive=Bool()),
             VolumeOptions=Obj(NoCopy=Bool(), Labels=_STRMAP, DriverConfig=Obj(Name=Str(256), Options=_STRMAP),
                               Subpath=Str(4096)),
             TmpfsOptions=Obj(SizeBytes=Int(0), Mode=Int(0, 0o7777), Options=List(List(Str()))))

HOST_CONFIG = Obj(
    Binds=List(Str(8192)), ContainerIDFile=Str(4096), LogConfig=Obj(Type=Str(256), Config=_STRMAP),
    NetworkMode=Str(MAX_NAME), PortBindings=Map(List(Obj(HostIp=Str(64), HostPort=Str(32)))),
    RestartPolicy=Obj(Name=Str(32),  # its values are services/runopts.py's to check, in docker's words
                      MaximumRetryCount=Int(0, why="maximum retry count cannot be negative", bare=True)),
    AutoRemove=Bool(), VolumeDriver=Str(256), VolumesFrom=List(Str(MAX_NAME)), ConsoleSize=List(Int(0, 65535), length=2),
    Annotations=_STRMAP, CapAdd=List(Str(64)), CapDrop=List(Str(64)), CgroupnsMode=Str(32), Dns=List(Str(256)),
    DnsOptions=List(Str(256)), DnsSearch=List(Str(256)), ExtraHosts=List(Str(1024)), GroupAdd=List(Str(256)),
    IpcMode=Str(MAX_NAME), Cgroup=Str(MAX_NAME), Links=List(Str(MAX_NAME)),
    OomScoreAdj=Int(-1000, 1000, why="Invalid value {v}, range for oom score adj is [-1000, 1000]"), PidMode=Str(MAX_NAME),
    Privileged=Bool(), PublishAllPorts=Bool(), ReadonlyRootfs=Bool(), SecurityOpt=List(Str(65536)),
    StorageOpt=_STRMAP, Tmpfs=_STRMAP, UTSMode=Str(MAX_NAME), UsernsMode=Str(MAX_NAME),
    ShmSize=Int(0, why="SHM size can not be less than 0"), Sysctls=_STRMAP, Runtime=Str(256), Isolation=Str(32),
    CpuShares=Int(0, why="cpu shares cannot be negative"),  # dockerd 20.10 takes -1; berth names the field
    Memory=Int(6 * MB, why="Minimum memory limit allowed is 6MB", zero_ok=True),
    NanoCpus=Int(0, why="NanoCPUs cannot be negative"), CgroupParent=Str(4096), BlkioWeight=Int(
        0, 65535, why="Range of blkio weight is from 10 to 1000"),  # (the range: runopts, after the host's support)
    BlkioWeightDevice=List(_WEIGHT_DEVICE), BlkioDeviceReadBps=List(_RATE_DEVICE),
    BlkioDeviceWriteBps=List(_RATE_DEVICE), BlkioDeviceReadIOps=List(_RATE_DEVICE),
    BlkioDeviceWriteIOps=List(_RATE_DEVICE),
    CpuPeriod=Int(1000, 1000000, why="CPU cfs period can not be less than 1ms (i.e. 1000) or larger than "
                                     "1s (i.e. 1000000)", zero_ok=True),
    CpuQuota=Int(-1, why="CPU cfs quota can not be less than 1ms (i.e. 1000)"),
    CpuRealtimePeriod=Int(0), CpuRealtimeRuntime=Int(-1), CpusetCpus=Str(1024),  # the list syntax: services/runopts.py, in docker's words
    CpusetMems=Str(1024), Devices=List(_DEVICE), DeviceCgroupRules=List(Str(256)),
    DeviceRequests=List(Obj(Driver=Str(256), Count=Int(-1), DeviceIDs=List(Str(256)),
                            Capabilities=List(List(Str(256))), Options=_STRMAP)),
    KernelMemory=Int(0), KernelMemoryTCP=Int(0),
    MemoryReservation=Int(6 * MB, why="Minimum memory reservation allowed is 6MB", zero_ok=True),
    MemorySwap=Int(-1, why="invalid memory swap: must be -1 (unlimited) or a limit"),
    MemorySwappiness=Int(-1, 100, why="Invalid value: {v}, valid memory swappiness range is 0-100"), OomKillDisable=Bool(),
    PidsLimit=Int(), Ulimits=List(Obj(Name=Str(64), Soft=Int(), Hard=Int())), CpuCount=Int(0), CpuPercent=Int(0, 100),
    IOMaximumIOps=Int(0), IOMaximumBandwidth=Int(0), Mounts=List(_MOUNT), MaskedPaths=List(Str(4096)),
    ReadonlyPaths=List(Str(4096)), Init=Bool())

_ENDPOINT = Obj(IPAMConfig=Obj(IPv4Address=Str(64), IPv6Address=Str(64), LinkLocalIPs=List(Str(64))),
                Links=List(Str(MAX_NAME)), Aliases=List(Str(MAX_NAME)), MacAddress=Str(64), DriverOpts=_STRMAP,
                NetworkID=Str(MAX_NAME), EndpointID=Str(MAX_NAME), Gateway=Str(64), IPAddress=Str(64),
                IPPrefixLen=Int(0, 128), DNSNames=List(Str(MAX_NAME)))

CONTAINER_CONFIG = Obj(
    nullable=False,
    Hostname=Str(253), Domainname=Str(253), User=Str(256), AttachStdin=Bool(), AttachStdout=Bool(),
    AttachStderr=Bool(), ExposedPorts=Map(AnyJSON()), Tty=Bool(), OpenStdin=Bool(), StdinOnce=Bool(), Env=_ENV,
    Cmd=StrSlice(), Healthcheck=_HEALTH, ArgsEscaped=Bool(), Image=Str(MAX_NAME), Volumes=Map(AnyJSON()),
    WorkingDir=Str(4096), Entrypoint=StrSlice(), NetworkDisabled=Bool(), MacAddress=Str(64), OnBuild=List(Str()),
    Labels=_STRMAP, StopSignal=Str(32), StopTimeout=Int(),  # (negative: no timeout, as dockerd)
    Shell=List(Str()), HostConfig=HOST_CONFIG,
    NetworkingConfig=Obj(EndpointsConfig=Map(_ENDPOINT)))

EXEC_CONFIG = Obj(nullable=False, AttachStdin=Bool(), AttachStdout=Bool(), AttachStderr=Bool(),
                  DetachKeys=Str(64), Tty=Bool(), ConsoleSize=List(Int(0, 65535), length=2), Env=_ENV,
                  Cmd=List(_ARG), Privileged=Bool(), User=Str(256), WorkingDir=Str(4096))

NETWORK_CREATE = Obj(
    nullable=False, required=("Name",), Name=Str(MAX_NAME), CheckDuplicate=Bool(), Driver=Str(256), Scope=Str(32),
    Internal=Bool(), Attachable=Bool(), Ingress=Bool(), ConfigOnly=Bool(), ConfigFrom=Obj(Network=Str(MAX_NAME)),
    EnableIPv6=Bool(), EnableIPv4=Bool(),
    IPAM=Obj(Driver=Str(256), Options=_STRMAP,
             Config=List(Obj(Subnet=Str(64), IPRange=Str(64), Gateway=Str(64), AuxiliaryAddresses=_STRMAP))),
    Options=_STRMAP, Labels=_STRMAP)

_NAME_Q = QStr(max=MAX_NAME)

ROUTES = {
    ("OPTIONS", "/{_any}"): Route(),  # (any path: a CORS preflight, answered 200 as dockerd's)
    ("GET", "/_ping"): Route(), ("HEAD", "/_ping"): Route(), ("GET", "/version"): Route(),
    ("GET", "/info"): Route(),
    ("POST", "/auth"): Route(body=Obj(nullable=False, username=Str(4096), password=Str(65536), email=Str(4096),
                                      serveraddress=Str(MAX_NAME), identitytoken=Str(65536),
                                      registrytoken=Str(65536))),
    # berth's namespaces
    ("GET", "/berth/namespaces"): Route(),
    ("POST", "/berth/namespaces"): Route(body=Obj(nullable=False, required=("Name",), Name=Str(256), Labels=_STRMAP)),
    ("GET", "/berth/namespaces/{name}"): Route(), ("DELETE", "/berth/namespaces/{name}"): Route(),
    # images
    ("GET", "/images/json"): Route(query={"all": _BOOL, "filters": _FILTERS, "digests": _BOOL,
                                          "shared-size": _BOOL, "manifests": _BOOL}),
    ("POST", "/images/create"): Route(stream=True, query={
        "fromImage": _NAME_Q, "fromSrc": QStr(max=MAX_NAME), "repo": _NAME_Q, "tag": QStr(max=256),
        "message": QStr(), "changes": QStr(multi=True), "platform": _PLATFORM}),
    ("POST", "/images/load"): Route(stream=True, query={"quiet": _BOOL, "platform": _PLATFORM}),
    ("GET", "/images/get"): Route(query={"names": QStr(multi=True, max=MAX_NAME), "platform": _PLATFORM}),
    ("POST", "/images/prune"): Route(query={"filters": _FILTERS}),
    ("GET", "/images/{name}/json"): Route(),
    ("GET", "/images/{name}/history"): Route(query={"platform": _PLATFORM}),
    ("GET", "/images/{name}/get"): Route(query={"platform": _PLATFORM}),
    ("POST", "/images/{name}/tag"): Route(query={"repo": QStr(max=MAX_NAME), "tag": QStr(max=256)}),
    ("POST", "/images/{name}/push"): Route(query={"tag": QStr(max=256), "platform": _PLATFORM}),
    ("DELETE", "/images/{name}"): Route(query={"force": _BOOL, "noprune": _BOOL}),
    # containers
    ("POST", "/containers/create"): Route(body=CONTAINER_CONFIG, query={
        "name": QStr(max=MAX_NAME),  # dockerd sets no length (a 300-character name is taken)
        "platform": _PLATFORM}),
    ("GET", "/containers/json"): Route(query={"all": _BOOL, "limit": QInt(-1, 1 << 31), "size": _BOOL,
                                              "filters": _FILTERS}),
    ("POST", "/containers/{id}/start"): Route(query={"detachKeys": QStr(max=64)}),
    ("POST", "/containers/{id}/wait"): Route(query={"condition": QStr(
        choices=("", "not-running", "next-exit", "removed"),
        why='expected one of "not-running", "next-exit", "removed"')}),
    ("GET", "/containers/{id}/json"): Route(query={"size": _BOOL}),
    ("DELETE", "/containers/{id}"): Route(query={"force": _BOOL, "v": _BOOL, "link": _BOOL}),
    ("POST", "/containers/{id}/stop"): Route(query={"t": QInt(-1, 1 << 31), "signal": QStr(max=32)}),
    ("POST", "/containers/{id}/restart"): Route(query={"t": QInt(-1, 1 << 31), "signal": QStr(max=32)}),
    ("POST", "/containers/{id}/kill"): Route(query={"signal": QStr(max=32, pattern=r"[A-Za-z0-9+]+")}),
    ("GET", "/containers/{id}/logs"): Route(query={
        "follow": _BOOL, "stdout": _BOOL, "stderr": _BOOL, "since": QTime(), "until": QTime(),
        "timestamps": _BOOL, "tail": QStr(max=32), "details": _BOOL}),  # tail: dockerd reads a bad one as all
    ("POST", "/containers/{id}/attach"): Route(query={
        "detachKeys": QStr(max=64), "logs": _BOOL, "stream": _BOOL, "stdin": _BOOL, "stdout": _BOOL,
        "stderr": _BOOL}),
    ("GET", "/containers/{id}/attach/ws"): Route(query={
        "detachKeys": QStr(max=64), "logs": _BOOL, "stream": _BOOL, "stdin": _BOOL, "stdout": _BOOL,
        "stderr": _BOOL}),
    ("POST", "/containers/{id}/resize"): Route(query={"h": QInt(0, 65535, empty=False, required=True),
                                                      "w": QInt(0, 65535, empty=False, required=True)}),
    ("POST", "/containers/prune"): Route(query={"filters": _FILTERS}),
    ("POST", "/containers/{id}/pause"): Route(), ("POST", "/containers/{id}/unpause"): Route(),
    ("POST", "/containers/{id}/rename"): Route(query={"name": QStr(max=MAX_NAME)}),  # none: dockerd's words
    ("GET", "/containers/{id}/top"): Route(query={"ps_args": QStr(max=1024)}),
    ("GET", "/containers/{id}/stats"): Route(query={"stream": _BOOL, "one-shot": _BOOL}),
    ("HEAD", "/containers/{id}/archive"): Route(query={"path": QStr(required=True, max=4096)}),
    ("GET", "/containers/{id}/archive"): Route(query={"path": QStr(required=True, max=4096)}),
    ("PUT", "/containers/{id}/archive"): Route(stream=True, query={
        "path": QStr(required=True, max=4096), "noOverwriteDirNonDir": _BOOL, "copyUIDGID": _BOOL}),
    ("GET", "/containers/{id}/changes"): Route(),
    # execs
    ("POST", "/containers/{id}/exec"): Route(body=EXEC_CONFIG),
    ("POST", "/exec/{id}/start"): Route(body=Obj(nullable=False, Detach=Bool(), Tty=Bool(),
                                                 ConsoleSize=List(Int(0, 65535), length=2)), body_optional=True),
    ("GET", "/exec/{id}/json"): Route(),
    ("POST", "/exec/{id}/resize"): Route(query={"h": QInt(0, 65535, empty=False, required=True),
                                                "w": QInt(0, 65535, empty=False, required=True)}),
    ("GET", "/events"): Route(query={"since": QTime(rfc3339=True), "until": QTime(rfc3339=True),
                                     "filters": _FILTERS}),
    # networks
    ("GET", "/networks"): Route(query={"filters": _FILTERS}),
    ("POST", "/networks/create"): Route(body=NETWORK_CREATE),
    ("POST", "/networks/prune"): Route(query={"filters": _FILTERS}),
    ("GET", "/networks/{id}"): Route(query={"verbose": _BOOL, "scope": QStr(max=32)}),
    ("DELETE", "/networks/{id}"): Route(),
    ("POST", "/networks/{id}/connect"): Route(body=Obj(nullable=False, required=("Container",),
                                                       Container=Str(MAX_NAME), EndpointConfig=_ENDPOINT)),
    ("POST", "/networks/{id}/disconnect"): Route(body=Obj(nullable=False, required=("Container",),
                                                          Container=Str(MAX_NAME), Force=Bool())),
    # volumes
    ("GET", "/volumes"): Route(query={"filters": _FILTERS}),
    ("POST", "/volumes/create"): Route(body=Obj(
        nullable=False, Name=Str(255),
        Driver=Str(256), DriverOpts=_STRMAP, Labels=_STRMAP, ClusterVolumeSpec=AnyJSON())),
    ("POST", "/volumes/prune"): Route(query={"filters": _FILTERS}),
    ("GET", "/volumes/{name}"): Route(), ("DELETE", "/volumes/{name}"): Route(query={"force": _BOOL}),
    # routes of the Docker Engine API that berth may serve later: checked as soon as they exist
    ("POST", "/build"): Route(stream=True, query={
        "dockerfile": QStr(max=4096), "t": QStr(multi=True, max=MAX_NAME), "extrahosts": QStr(),
        "remote": QStr(max=4096), "q": _BOOL, "nocache": _BOOL, "cachefrom": QStr(), "pull": QStr(max=64),
        "rm": _BOOL, "forcerm": _BOOL, "memory": QInt(0), "memswap": QInt(-1), "cpushares": QInt(0),
        "cpusetcpus": QStr(max=1024), "cpuperiod": QInt(0), "cpuquota": QInt(-1), "buildargs": QJSON(),
        "shmsize": QInt(0), "squash": _BOOL, "labels": QJSON(), "networkmode": QStr(max=MAX_NAME),
        "platform": _PLATFORM, "target": QStr(max=256), "outputs": QStr(), "version": QStr(max=8),
        "ulimits": QJSON(List(Obj(Name=Str(64), Soft=Int(), Hard=Int()))), "cgroupparent": QStr(max=4096), "cpusetmems": QStr(max=1024), "isolation": QStr(max=64)}),
    ("POST", "/build/prune"): Route(query={"filters": _FILTERS, "keep-storage": QInt(0), "all": _BOOL}),
    ("POST", "/commit"): Route(body=CONTAINER_CONFIG, body_optional=True, query={
        "container": QStr(max=MAX_NAME), "repo": _NAME_Q, "tag": QStr(max=256), "comment": QStr(),
        "author": QStr(max=4096), "pause": _BOOL, "changes": QStr(multi=True)}),
    ("GET", "/containers/{id}/export"): Route(),
    ("POST", "/containers/{id}/update"): Route(body=Obj(HOST_CONFIG.fields, nullable=False)),
    ("GET", "/system/df"): Route(query={"type": QStr(multi=True, max=64)}),  # (the values: api/system.py)
    ("GET", "/images/search"): Route(query={"term": QStr(max=MAX_NAME), "limit": QInt(),  # (its range: dockerd's words)
                                            "filters": _FILTERS}),
    ("GET", "/distribution/{name}/json"): Route(),
    ("DELETE", "/containers/{id}/{alias}"): Route(query={"link": _BOOL}),
    # managed plugins: none installed, none installed here (berth/api/plugins.py)
    ("GET", "/plugins"): Route(query={"filters": _FILTERS}),
    ("GET", "/plugins/privileges"): Route(query={"remote": QStr(max=MAX_NAME)}),
    ("POST", "/plugins/pull"): Route(query={"remote": QStr(max=MAX_NAME), "name": QStr(max=MAX_NAME)}),
    ("POST", "/plugins/create"): Route(stream=True, query={"name": QStr(max=MAX_NAME)}),
    ("GET", "/plugins/{name}/json"): Route(), ("DELETE", "/plugins/{name}"): Route(query={"force": _BOOL}),
    ("POST", "/plugins/{name}/enable"): Route(query={"timeout": QInt(0)}),
    ("POST", "/plugins/{name}/disable"): Route(query={"force": _BOOL}),
    ("POST", "/plugins/{name}/set"): Route(), ("POST", "/plugins/{name}/upgrade"): Route(),
    ("POST", "/plugins/{name}/push"): Route(),
}
# swarm: a node not in a swarm answers 503 whatever it is sent (berth/api/swarm.py)
for _m, _paths in (("POST", ("/swarm/init", "/swarm/join", "/swarm/leave", "/swarm/update", "/swarm/unlock",
                             "/nodes/{id}/update", "/services/create", "/services/{id}/update", "/secrets/create",
                             "/secrets/{id}/update", "/configs/create", "/configs/{id}/update")),
                   ("GET", ("/swarm", "/swarm/unlockkey", "/nodes", "/nodes/{id}", "/services", "/services/{id}",
                            "/services/{id}/logs", "/tasks", "/tasks/{id}", "/tasks/{id}/logs", "/secrets",
                            "/secrets/{id}", "/configs", "/configs/{id}")),
                   ("DELETE", ("/nodes/{id}", "/services/{id}", "/secrets/{id}", "/configs/{id}"))):
    for _p in _paths:
        ROUTES[(_m, _p)] = Route()


def route_of(request: web.Request) -> Route | None:
    """The schema of a request's route (None for a route with none: only the generic checks)."""
    info = request.match_info
    route = getattr(info, "route", None)
    if route is None or route.resource is None:
        return None
    canon = route.resource.canonical
    if canon.startswith("/v{"):
        canon = canon.split("}", 1)[1]
    return ROUTES.get((request.method, canon))
