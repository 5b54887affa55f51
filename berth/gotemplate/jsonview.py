"""Decoded JSON as the docker CLI's templates see it.

docker inspect (and network/volume/image inspect) executes a template first on the typed Go struct
the JSON decodes into and, if that fails, on the raw JSON (decoded with UseNumber, missingkey=error).
typed() approximates the typed struct without the Go types: objects are structs (fields in wire
order) except the values of the keys docker types as maps; arrays of strings are []string; numbers
are ints; null in a map- or slice-typed field is a nil map or slice. raw() is the fallback's view."""

from berth.gotemplate.values import Box, GoList, GoMap, GoStruct, JsonNumber

# keys whose object value is a Go map (docker's API types), with the element's zero value
MAP_KEYS = {
    "Labels": "", "Options": "", "DriverOpts": "", "Attributes": "", "Sysctls": "", "StorageOpt": "",
    "Tmpfs": "", "Data": "", "Annotations": "", "Status": None, "Networks": None, "Ports": None,
    "ExposedPorts": "{}", "Volumes": "{}", "Containers": "{}", "Aliases": None, "Config@LogConfig": "",
    "Options@IPAM": "", "AuxiliaryAddresses": "", "Plugins": None, "Services": None,
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
        from berth.gotemplate.gofmt import _json_float
        return JsonNumber(_json_float(v))
    return v


# Go struct layouts of docker's API types (field order, kinds, omitempty), as the docker CLI decodes
# them: "JsonName:kind[:o]". kinds: s string, i int, b bool, p pointer to a scalar, l []string,
# m map[string]string, x anything (kept as decoded), S<T> struct, P<T> pointer to struct,
# L<T> slice of structs, M<T> map of structs, E map[string]struct {}; "|" separates embedded
# structs (their fields are promoted: one JSON object, printed as {{...} {...}}).
SCHEMAS = {
    "container": "Id:s Created:s Path:s Args:l State:PState Image:s ResolvConfPath:s HostnamePath:s HostsPath:s "
                 "LogPath:s Node:x:o Name:s RestartCount:i Driver:s Platform:s MountLabel:s ProcessLabel:s "
                 "AppArmorProfile:s ExecIDs:l HostConfig:PHostConfig GraphDriver:SGraphDriver SizeRw:p:o "
                 "SizeRootFs:p:o Mounts:LMountPoint Config:PConfig NetworkSettings:PNetworkSettings "
                 "ImageManifestDescriptor:x:o",
    "State": "Status:s Running:b Paused:b Restarting:b OOMKilled:b Dead:b Pid:i ExitCode:i Error:s StartedAt:s "
             "FinishedAt:s Health:PHealth:o",
    "Health": "Status:s FailingStreak:i Log:x",
    "Config": "Hostname:s Domainname:s User:s AttachStdin:b AttachStdout:b AttachStderr:b ExposedPorts:E:o Tty:b "
              "OpenStdin:b StdinOnce:b Env:l Cmd:l Healthcheck:x:o ArgsEscaped:b:o Image:s Volumes:E WorkingDir:s "
              "Entrypoint:l NetworkDisabled:b:o MacAddress:s:o OnBuild:l Labels:m StopSignal:s:o StopTimeout:p:o "
              "Shell:l:o",
    "GraphDriver": "Data:m Name:s",
    "MountPoint": "Type:s:o Name:s:o Source:s Destination:s Driver:s:o Mode:s RW:b Propagation:s",
    "NetworkSettings": "Bridge:s SandboxID:s SandboxKey:s Ports:B HairpinMode:b LinkLocalIPv6Address:s "
                       "LinkLocalIPv6PrefixLen:i SecondaryIPAddresses:x SecondaryIPv6Addresses:x EndpointID:s "
                       "Gateway:s GlobalIPv6Address:s GlobalIPv6PrefixLen:i IPAddress:s IPPrefixLen:i "
                       "IPv6Gateway:s MacAddress:s Networks:MEndpointSettings",
    "EndpointSettings": "IPAMConfig:x Links:l Aliases:l MacAddress:s DriverOpts:m GwPriority:i NetworkID:s "
                        "EndpointID:s Gateway:s IPAddress:s IPPrefixLen:i IPv6Gateway:s GlobalIPv6Address:s "
                        "GlobalIPv6PrefixLen:i DNSNames:l",
    "HostConfig": "Binds:l ContainerIDFile:s LogConfig:SLogConfig NetworkMode:s PortBindings:B "
                  "RestartPolicy:SRestartPolicy AutoRemove:b VolumeDriver:s VolumesFrom:l ConsoleSize:x "
                  "Annotations:m:o CapAdd:l CapDrop:l CgroupnsMode:s Dns:l DnsOptions:l DnsSearch:l ExtraHosts:l "
                  "GroupAdd:l IpcMode:s Cgroup:s Links:l OomScoreAdj:i PidMode:s Privileged:b PublishAllPorts:b "
                  "ReadonlyRootfs:b SecurityOpt:l StorageOpt:m:o Tmpfs:m:o UTSMode:s UsernsMode:s ShmSize:i "
                  "Sysctls:m:o Runtime:s:o Isolation:s CpuShares:i Memory:i NanoCpus:i CgroupParent:s "
                  "BlkioWeight:i BlkioWeightDevice:x BlkioDeviceReadBps:x BlkioDeviceWriteBps:x "
                  "BlkioDeviceReadIOps:x BlkioDeviceWriteIOps:x CpuPeriod:i CpuQuota:i CpuRealtimePeriod:i "
                  "CpuRealtimeRuntime:i CpusetCpus:s CpusetMems:s Devices:x DeviceCgroupRules:l DeviceRequests:x "
                  "KernelMemory:i:o KernelMemoryTCP:i:o MemoryReservation:i MemorySwap:i MemorySwappiness:p "
                  "OomKillDisable:p PidsLimit:p Ulimits:x CpuCount:i CpuPercent:i IOMaximumIOps:i "
                  "IOMaximumBandwidth:i Mounts:x:o MaskedPaths:l ReadonlyPaths:l Init:p:o",
    "LogConfig": "Type:s Config:m",
    "PortBinding": "HostIp:s HostPort:s",
    "RestartPolicy": "Name:s MaximumRetryCount:i",
    "network": "Name:s Id:s Created:t Scope:s Driver:s EnableIPv4:b EnableIPv6:b IPAM:SIPAM Internal:b "
               "Attachable:b Ingress:b ConfigFrom:SConfigReference ConfigOnly:b Containers:MEndpointResource "
               "Options:m Labels:m Peers:LPeerInfo:o Services:x:o",
    "PeerInfo": "Name:s IP:s",
    "IPAM": "Driver:s Options:m Config:LIPAMConfig",
    "IPAMConfig": "Subnet:s:o IPRange:s:o Gateway:s:o AuxiliaryAddresses:m:o",
    "ConfigReference": "Network:s",
    "EndpointResource": "Name:s EndpointID:s MacAddress:s IPv4Address:s IPv6Address:s",
    "volume": "ClusterVolume:x:o CreatedAt:s:o Driver:s Labels:m Mountpoint:s Name:s Options:m Scope:s "
              "Status:x:o UsageData:x:o",
    "image": "Id:s RepoTags:l RepoDigests:l Parent:s Comment:s Created:s:o Container:s:o ContainerConfig:x:o "
             "DockerVersion:s Author:s Config:PImageConfig Architecture:s Variant:s:o Os:s OsVersion:s:o Size:i "
             "VirtualSize:i:o GraphDriver:SGraphDriver RootFS:SRootFS Metadata:SImageMetadata Descriptor:x:o "
             "Manifests:x:o",
    "ImageConfig": "User:s:o ExposedPorts:E:o Env:l:o Entrypoint:l:o Cmd:l:o Volumes:E:o WorkingDir:s:o Labels:m:o "
                   "StopSignal:s:o ArgsEscaped:b:o | Healthcheck:x:o OnBuild:l:o Shell:l:o",
    "RootFS": "Type:s Layers:l:o",
    "ImageMetadata": "LastTagTime:t",
    "info": "ID:s Containers:i ContainersRunning:i ContainersPaused:i ContainersStopped:i Images:i Driver:s "
            "DriverStatus:x Plugins:SPluginsInfo MemoryLimit:b SwapLimit:b KernelMemory:b:o KernelMemoryTCP:b:o "
            "CpuCfsPeriod:b CpuCfsQuota:b CPUShares:b CPUSet:b PidsLimit:b IPv4Forwarding:b BridgeNfIptables:b:o "
            "BridgeNfIp6tables:b:o Debug:b NFd:i OomKillDisable:b NGoroutines:i SystemTime:s LoggingDriver:s "
            "CgroupDriver:s CgroupVersion:s NEventsListener:i KernelVersion:s OperatingSystem:s OSVersion:s "
            "OSType:s Architecture:s IndexServerAddress:s RegistryConfig:r NCPU:i MemTotal:i GenericResources:x "
            "DockerRootDir:s HttpProxy:s HttpsProxy:s NoProxy:s Name:s Labels:l ExperimentalBuild:b "
            "ServerVersion:s Runtimes:MRuntime DefaultRuntime:s Swarm:SSwarmInfo LiveRestoreEnabled:b Isolation:s "
            "InitBinary:s ContainerdCommit:SCommit RuncCommit:SCommit InitCommit:SCommit SecurityOptions:l "
            "ProductLicense:s:o DefaultAddressPools:x:o FirewallBackend:x:o CDISpecDirs:l Containerd:x:o "
            "Warnings:l ClientInfo:PClientInfo ClientErrors:l:o",
    "PluginsInfo": "Volume:l Network:l Authorization:l Log:l",
    "Runtime": "path:s runtimeArgs:l:o",
    "SwarmInfo": "NodeID:s NodeAddr:s LocalNodeState:s ControlAvailable:b Error:s RemoteManagers:x Nodes:i:o "
                 "Managers:i:o Cluster:x:o Warnings:l:o",
    "Commit": "ID:s Expected:s:o",
    "ClientInfo": "Debug:b Version:s ApiVersion:s:o DefaultAPIVersion:s:o GitCommit:s GoVersion:s Os:s Arch:s "
                  "BuildTime:s:o Context:s Plugins:x Warnings:l",
    "version": "Client:SClientVersion Server:PServerVersion",
    "ClientVersion": "Platform:PPlatform:o Version:s ApiVersion:s DefaultAPIVersion:s:o GitCommit:s GoVersion:s "
                     "Os:s Arch:s BuildTime:s:o Context:s",
    "ComponentVersion": "Name:s Version:s Details:r:o",
    "ServerVersion": "Platform:SPlatform Components:LComponentVersion Version:s ApiVersion:s MinAPIVersion:s:o GitCommit:s "
                     "GoVersion:s Os:s Arch:s KernelVersion:s:o Experimental:b:o BuildTime:s:o",
    "Platform": "Name:s",
}
_GO_FIELD = dict(GO_NAMES, AuxiliaryAddresses="AuxAddress", HostIp="HostIP", CpuCfsPeriod="CPUCfsPeriod", CpuCfsQuota="CPUCfsQuota",
                 HttpProxy="HTTPProxy", HttpsProxy="HTTPSProxy", path="Path", runtimeArgs="Args")
_ZERO = {"s": "", "i": 0, "b": False}


def _parse_schema(name):
    out = []
    for f in SCHEMAS[name].split():
        if f == "|":
            out.append(("|", None, False))
            continue
        parts = f.split(":")
        out.append((parts[0], parts[1], len(parts) > 2))
    return out


def _typed_kind(v, k, key):
    c = k[0]
    if c in "sib":
        return _ZERO[c] if v is None else v
    if c == "p":
        return v
    if c == "r":
        return v
    if c == "B":  # nat.PortMap: map[Port][]PortBinding
        if v is None:
            return GoMap({}, "nat.PortMap", GoList([], "[]nat.PortBinding", nil=True), nil=True)
        return GoMap({kk: GoList([typed_as(b, "PortBinding") for b in x or []], "[]nat.PortBinding", nil=x is None)
                      for kk, x in v.items()}, "nat.PortMap", GoList([], "[]nat.PortBinding", nil=True))
    if c == "t":
        return GoTime(v or "0001-01-01T00:00:00Z")
    if c == "l":
        if v is None:
            return GoList([], "[]string", nil=True)
        return GoList([typed(x) for x in v], "[]string")
    if c == "m":
        if v is None:
            return GoMap({}, "map[string]string", "", nil=True)
        return GoMap(v, "map[string]string", "")
    if c == "E":
        z = GoStruct("struct {}", {})
        if v is None:
            return GoMap({}, "map[string]struct {}", z, nil=True)
        return GoMap({kk: GoStruct("struct {}", {}) for kk in v}, "map[string]struct {}", z)
    if c in "SP":
        if v is None:
            return None if c == "P" else typed_as({}, k[1:])
        return typed_as(v, k[1:])
    if c == "L":
        if v is None:
            return GoList([], "[]" + k[1:], nil=True)
        return GoList([typed_as(x, k[1:]) if isinstance(x, dict) else typed(x) for x in v], "[]" + k[1:])
    if c == "M":
        if v is None:
            return GoMap({}, "map[string]" + k[1:], None, nil=True)
        return GoMap({kk: typed_as(x, k[1:]) if isinstance(x, dict) else typed(x) for kk, x in v.items()},
                     "map[string]" + k[1:], None)
    return typed(v, key)


class GoTime(GoStruct):
    """A time.Time from an RFC 3339 string: prints as Time.String(), marshals as RFC 3339 with
    the fraction's trailing zeros dropped (RFC3339Nano)."""

    gotype = "time.Time"

    def __init__(self, s):
        super().__init__("time.Time", {})
        self.s = s
        base, _, rest = s.partition(".")
        frac = ""
        zone = ""
        if rest:
            i = 0
            while i < len(rest) and rest[i].isdigit():
                i += 1
            frac, zone = rest[:i], rest[i:]
        else:
            for j in range(len(base) - 1, 9, -1):
                if base[j] in "Z+-":
                    base, zone = base[:j], base[j:]
                    break
        self.base, self.frac, self.zone = base, frac.rstrip("0"), zone

    def marshal_json(self):
        return '"' + self.base + ("." + self.frac if self.frac else "") + self.zone + '"'

    def go_string(self):
        d, _, t = self.base.partition("T")
        z = self.zone
        if z in ("Z", ""):
            zs = "+0000 UTC"
        else:
            off = z.replace(":", "")
            zs = off + " " + off
        return d + " " + t + ("." + self.frac if self.frac else "") + " " + zs


def typed_as(obj, name):
    """obj decoded into the Go struct `name` of SCHEMAS: fields in Go's order, missing ones at
    their zero value, unknown ones dropped (as encoding/json does)."""
    if name not in SCHEMAS or not isinstance(obj, dict):
        return typed(obj)
    fields, names, omit, groups = {}, {}, [], [[]]
    for key, k, o in _parse_schema(name):
        if key == "|":
            groups.append([])
            continue
        go = _GO_FIELD.get(key, key)
        groups[-1].append(go)
        fields[go] = _typed_kind(obj.get(key), k, key)
        if go != key:
            names[go] = key
        if o:
            omit.append(go)
    s = GoStruct(name, fields, json_names=names, omitempty=omit)
    if len(groups) > 1:
        s.groups = groups
    return s
