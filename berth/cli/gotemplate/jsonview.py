"""Decoded JSON as the docker CLI's templates see it.

docker inspect (and network/volume/image inspect) executes a template first on the typed Go struct
the JSON decodes into and, if that fails, on the raw JSON (decoded with UseNumber, missingkey=error).
typed() approximates the typed struct without the Go types: objects are structs (fields in wire
order) except the values of the keys docker types as maps; arrays of strings are []string; numbers
are ints; null in a map- or slice-typed field is a nil map or slice. raw() is the fallback's view."""

from berth.cli.gotemplate.values import Box, GoList, GoMap, GoStruct, JsonNumber

# keys whose object value is a Go map (docker's API types), with the element's zero value
MAP_KEYS = {
    "Labels": "", "Options": "", "DriverOpts": "", "Attributes": "", "Sysctls": "", "StorageOpt": "",
    "Tmpfs": "", "Data": "", "Annotations": "", "Status": None, "Networks": None, "Ports": None,
    "ExposedPorts": "{}", "Volumes": "{}", "Containers": "{}", "Aliases": None, "Config@LogConfig": "",
    "Options@IPAM": "", "AuxiliaryAddresses": "", "Plugins": None, "Services": None, "Peers": None,
}
# keys whose value is a Go slice of strings (a JSON null there is a nil []string)
LIST_KEYS = {
    "Env", "Cmd", "Entrypoint", "OnBuild", "Shell", "Binds", "Links", "Dns", "DnsOptions", "DnsSearch",
    "ExtraHosts", "CapAdd", "CapDrop", "SecurityOpt", "RepoTags", "RepoDigests", "Layers", "GroupAdd",
    "DNSNames", "Args", "VolumesFrom", "MaskedPaths", "ReadonlyPaths", "ConsoleSize", "Warnings",
    "Test", "SecondaryIPAddresses", "SecondaryIPv6Addresses", "ExecIDs", "DeviceCgroupRules",
}
# keys whose array value holds structs (a JSON null there is a nil slice of structs)
STRUCT_LIST_KEYS = {"Mounts", "Devices", "Ulimits", "BlkioWeightDevice", "BlkioDeviceReadBps",
                    "BlkioDeviceWriteBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps", "DeviceRequests",
                    "Config@IPAM", "Log"}


# JSON names whose Go field is named otherwise (docker's API types)
GO_NAMES = {"Id": "ID", "ApiVersion": "APIVersion", "CpuShares": "CPUShares", "CpuPeriod": "CPUPeriod",
            "CpuQuota": "CPUQuota", "CpuRealtimePeriod": "CPURealtimePeriod", "CpuRealtimeRuntime":
            "CPURealtimeRuntime", "CpuCount": "CPUCount", "CpuPercent": "CPUPercent", "NanoCpus": "NanoCPUs",
            "Dns": "DNS", "DnsOptions": "DNSOptions", "DnsSearch": "DNSSearch", "IOMaximumIOps": "IOMaximumIOps"}


def _map_zero(key):
    z = MAP_KEYS.get(key, None)
    if z == "{}":
        return GoStruct("struct {}", {})
    return z


def _key(key, parent):
    if parent and key + "@" + parent in MAP_KEYS:
        return key + "@" + parent
    if parent and key + "@" + parent in STRUCT_LIST_KEYS:
        return key + "@" + parent
    return key


def typed(v, key=None, parent=None):
    k = _key(key, parent) if key else None
    if isinstance(v, dict):
        if k in MAP_KEYS:
            vals = {kk: typed(vv, kk if isinstance(vv, dict) and k in ("Networks", "Containers") else None, key)
                    for kk, vv in v.items()}
            if all(isinstance(x, str) for x in vals.values()) and MAP_KEYS[k] == "":
                return GoMap(vals, "map[string]string", "")
            if k == "Status":
                return GoMap(v, "map[string]interface {}", Box(None), elem_iface=True)
            zero = _map_zero(k)
            return GoMap({kk: typed(vv, None, key) for kk, vv in v.items()},
                         "map[string]" + ("struct {}" if isinstance(zero, GoStruct) else "*struct"), zero)
        fields = {GO_NAMES.get(kk, kk): typed(vv, kk, key) for kk, vv in v.items()}
        names = {GO_NAMES[kk]: kk for kk in v if kk in GO_NAMES}
        return GoStruct(key or "struct", fields, json_names=names)
    if isinstance(v, list):
        items = [typed(x, None, key) for x in v]
        if all(isinstance(x, str) for x in items) and k not in STRUCT_LIST_KEYS:
            return GoList(items, "[]string")
        return GoList(items, "[]struct")
    if v is None:
        if k in MAP_KEYS:
            return GoMap({}, "map[string]string", _map_zero(k), nil=True)
        if k in LIST_KEYS:
            return GoList([], "[]string", nil=True)
        if k in STRUCT_LIST_KEYS:
            return GoList([], "[]struct", nil=True)
        return None
    return v


def raw(v):
    """json.Decoder.UseNumber's view: numbers are json.Number; objects and arrays stay raw."""
    if isinstance(v, dict):
        return {k: raw(x) for k, x in v.items()}
    if isinstance(v, list):
        return [raw(x) for x in v]
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return JsonNumber(str(v))
    if isinstance(v, float):
        from berth.cli.gotemplate.gofmt import _json_float
        return JsonNumber(_json_float(v))
    return v
