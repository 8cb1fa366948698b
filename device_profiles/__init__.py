"""Device profiles (one YAML per phone) and shipped latency predictors.

    from device_profiles import get_profile, list_profiles, match_profile
    get_profile("pixel4").modes["gold-1t"]      # Mode(mask='70', threads=1)
    match_profile({"ro.product.device": "venus"}).name   # 'xiaomi11'

Users add a phone by dropping a YAML file (same shape as the shipped ones) into
``$EVIT_DEVICE_PROFILES`` or ``~/.config/evit/devices``; a user file with the name of a shipped
profile replaces it.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
PREDICTORS = HERE / "predictors"


class ProfileError(ValueError):
    """A device profile is missing or malformed; the message says which field and how to fix it."""


@dataclass(frozen=True)
class Cluster:
    name: str
    cpus: tuple[int, ...]
    max_mhz: float


@dataclass(frozen=True)
class Mode:
    """One way to run: a taskset mask (hex, bit i = cpu i, no 0x) and a thread count."""

    mask: str
    threads: int

    @property
    def cpus(self) -> tuple[int, ...]:
        value = int(self.mask, 16)
        return tuple(i for i in range(value.bit_length()) if value >> i & 1)


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    display: str
    aliases: tuple[str, ...] = ()
    # names users type: marketing names, Qualcomm AI Hub's, the SoC's, nn-Meter's predictors'
    names: tuple[str, ...] = ()
    match: dict = field(default_factory=dict)
    soc: str = ""
    gpu: str = ""
    ram_gb: float = 0.0
    clusters: tuple[Cluster, ...] = ()
    modes: dict = field(default_factory=dict)
    default_mode: str = ""
    delegates: tuple[str, ...] = ("xnnpack",)
    paper_lut: str = ""
    statistic: str = "median"  # the latency figure predictors learn and checks compare
    source: str = ""

    @property
    def is_host(self) -> bool:
        return self.name == "host"

    def mode(self, name: str | None = None) -> Mode:
        name = name or self.default_mode
        if name not in self.modes:
            raise ProfileError(
                f"{self.name}: mode {name!r} is not defined; choose one of {', '.join(self.modes)}"
            )
        return self.modes[name]

    def props(self) -> dict[str, str]:
        """The identifying properties, first value of each (used by the loopback test phone)."""
        return {k: v[0] for k, v in self.match.items() if v}

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "display": self.display,
            "aliases": list(self.aliases),
            "names": list(self.names),
            "match": {k: list(v) for k, v in self.match.items()},
            "soc": self.soc,
            "gpu": self.gpu,
            "ram_gb": self.ram_gb,
            "clusters": [
                {"name": c.name, "cpus": list(c.cpus), "max_mhz": c.max_mhz} for c in self.clusters
            ],
            "modes": {k: {"mask": m.mask, "threads": m.threads} for k, m in self.modes.items()},
            "default_mode": self.default_mode,
            "delegates": list(self.delegates),
            "paper_lut": self.paper_lut,
            "statistic": self.statistic,
            "source": self.source,
        }


KNOWN_KEYS = {
    "name", "display", "aliases", "names", "match", "soc", "gpu", "ram_gb", "clusters", "modes",
    "default_mode", "delegates", "paper_lut", "statistic",
}
DELEGATES = ("xnnpack", "gpu", "nnapi", "cpu")
# median: the median over invocations of each invocation's median run (phones);
# best: the fastest run of all invocations, for machines whose neighbours (a shared VM) slow
# a varying share of runs and processes down
STATISTICS = ("median", "best")


def _fail(src: str, field_name: str, value, allowed: str) -> ProfileError:
    return ProfileError(f"{src}: {field_name} = {value!r} is not valid; {allowed}")


def parse_profile(data: dict, source: str = "<dict>") -> DeviceProfile:
    """Validate one profile mapping; errors name the file, the field and what is allowed."""
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: a profile must be a YAML mapping, got {type(data).__name__}")
    unknown = set(data) - KNOWN_KEYS
    if unknown:
        raise ProfileError(
            f"{source}: unknown field(s) {sorted(unknown)}; allowed: {sorted(KNOWN_KEYS)}"
        )
    name = data.get("name")
    plain = isinstance(name, str) and name.replace("-", "").replace("_", "").isalnum()
    if not plain:
        raise _fail(source, "name", name, "use letters, digits, '-' or '_' (e.g. pixel7)")
    match = data.get("match") or {}
    if not isinstance(match, dict):
        raise _fail(source, "match", match, "a mapping of property -> list of values")
    match = {
        str(k): tuple(str(x) for x in (v if isinstance(v, list) else [v])) for k, v in match.items()
    }
    clusters = []
    for i, c in enumerate(data.get("clusters") or []):
        try:
            cpus = tuple(int(x) for x in c["cpus"])
            clusters.append(Cluster(str(c["name"]), cpus, float(c["max_mhz"])))
        except (KeyError, TypeError, ValueError) as e:
            raise _fail(
                source, f"clusters[{i}]", c, "each cluster needs name, cpus (list), max_mhz"
            ) from e
    modes = {}
    for key, m in (data.get("modes") or {}).items():
        try:
            mask, threads = str(m["mask"]).lower(), int(m["threads"])
            if mask.startswith("0x"):
                raise ValueError("no 0x")
            if int(mask, 16) <= 0 or threads <= 0:
                raise ValueError("zero")
        except (KeyError, TypeError, ValueError) as e:
            raise _fail(
                source, f"modes.{key}", m,
                "give mask as hex without 0x (bit i = cpu i, e.g. '70') and threads >= 1",
            ) from e
        mode = Mode(mask, threads)
        if threads > len(mode.cpus):
            raise _fail(
                source, f"modes.{key}.threads", threads,
                f"at most {len(mode.cpus)} (the cpus in mask {mask})",
            )
        modes[str(key)] = mode
    if not modes:
        raise _fail(source, "modes", data.get("modes"), "define at least one mode")
    default_mode = str(data.get("default_mode") or next(iter(modes)))
    if default_mode not in modes:
        raise _fail(source, "default_mode", default_mode, f"choose one of {', '.join(modes)}")
    delegates = tuple(str(d) for d in data.get("delegates") or ["xnnpack"])
    for d in delegates:
        if d not in DELEGATES:
            raise _fail(source, "delegates", d, f"choose from {', '.join(DELEGATES)}")
    statistic = str(data.get("statistic") or "median")
    if statistic not in STATISTICS:
        raise _fail(source, "statistic", statistic, f"choose one of {', '.join(STATISTICS)}")
    return DeviceProfile(
        name=name,
        display=str(data.get("display") or name),
        aliases=tuple(str(a).lower() for a in data.get("aliases") or []),
        names=tuple(str(a) for a in data.get("names") or []),
        match=match,
        soc=str(data.get("soc") or ""),
        gpu=str(data.get("gpu") or ""),
        ram_gb=float(data.get("ram_gb") or 0),
        clusters=tuple(clusters),
        modes=modes,
        default_mode=default_mode,
        delegates=delegates,
        paper_lut=str(data.get("paper_lut") or ""),
        statistic=statistic,
        source=source,
    )


def load_profile_file(path: str | Path) -> DeviceProfile:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ProfileError(f"{path}: not valid YAML ({e}); fix the file or remove it") from e
    profile = parse_profile(data, str(path))
    return _with_host_facts(profile) if profile.name == "host" else profile


def user_dirs() -> list[Path]:
    env = os.environ.get("EVIT_DEVICE_PROFILES")
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    return [Path.home() / ".config" / "evit" / "devices"]


def list_profiles(extra_dirs: list[Path] | None = None) -> dict[str, DeviceProfile]:
    """Shipped profiles, then user profiles (which replace shipped ones of the same name)."""
    out: dict[str, DeviceProfile] = {}
    for folder in [HERE, *user_dirs(), *(extra_dirs or [])]:
        if folder.is_dir():
            for f in sorted(folder.glob("*.yaml")):
                p = load_profile_file(f)
                out[p.name] = p
    return out


def normalize_name(name: str) -> str:
    """How device names compare: case, spaces, dashes, underscores and an AI Hub-style
    "(Family)" suffix do not matter ("Google Pixel 4 (Family)" = "google-pixel-4")."""
    name = re.sub(r"\((?:family|proxy)\)", "", name.lower())
    return re.sub(r"[\s_\-]+", "", name)


def profile_names(p: DeviceProfile) -> list[str]:
    """Every name a profile answers to: its name, aliases, names, display name, SoC."""
    out = [p.name, *p.aliases, *p.names, p.display, re.sub(r"\s*\(.*\)", "", p.display)]
    if p.soc and not p.is_host:
        out += [p.soc, re.sub(r"\s*\(.*\)", "", p.soc)]
    return out


def get_profile(name: str) -> DeviceProfile:
    """A profile by any name it answers to (see :func:`profile_names`), case-insensitively;
    an unknown name gets the close matches."""
    profiles = list_profiles()
    key = normalize_name(name)
    hits = [p for p in profiles.values() if key in {normalize_name(n) for n in
                                                      profile_names(p)}]
    if len({p.name for p in hits}) == 1:
        return hits[0]
    if hits:
        raise ProfileError(f"device name {name!r} is ambiguous: it names "
                           f"{', '.join(sorted({p.name for p in hits}))}; use one of those")
    import difflib

    every = {n: p.name for p in profiles.values() for n in profile_names(p)}
    close = difflib.get_close_matches(name, list(every), n=4, cutoff=0.5)
    close += [n for n in every if key and key in normalize_name(n) and n not in close][:4]
    hint = (f"; did you mean {', '.join(f'{c!r} ({every[c]})' for c in close[:4])}?" if close
            else ".")
    raise ProfileError(
        f"unknown device {name!r}{hint} Known: {', '.join(sorted(profiles))} (`evit devices` "
        f"lists every name they answer to). To add a phone, copy {HERE / 'pixel4.yaml'} into "
        f"{user_dirs()[0]} and edit it"
    )


def match_profile(props: dict[str, str]) -> DeviceProfile | None:
    """The profile whose identifying properties match a phone's getprop values.

    ro.product.device (the stable codename) decides first, then ro.product.model, then the SoC
    platform; None if nothing matches.
    """
    profiles = [p for p in list_profiles().values() if not p.is_host]
    for key in ("ro.product.device", "ro.product.model", "ro.board.platform"):
        value = props.get(key)
        if not value:
            continue
        hits = [p for p in profiles if value in p.match.get(key, ())]
        if hits:
            return hits[0]
    return None


# -- the host ------------------------------------------------------------------------------

def host_cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _host_clusters() -> tuple[Cluster, ...]:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(
        range(os.cpu_count() or 1)
    )
    groups: dict[float, list[int]] = {}
    for c in cpus:
        f = Path(f"/sys/devices/system/cpu/cpu{c}/cpufreq/cpuinfo_max_freq")
        try:
            mhz = int(f.read_text()) / 1000
        except (OSError, ValueError):
            mhz = 0.0
        groups.setdefault(mhz, []).append(c)
    return tuple(
        Cluster(f"cluster{i}", tuple(v), k) for i, (k, v) in enumerate(sorted(groups.items()))
    )


def _with_host_facts(p: DeviceProfile) -> DeviceProfile:
    clusters = _host_clusters()
    cpus = sorted(c for cl in clusters for c in cl.cpus)
    modes = {"1t": Mode(format(1 << cpus[0], "x"), 1)}
    if len(cpus) > 1:
        modes[f"{len(cpus)}t"] = Mode(format(sum(1 << c for c in cpus), "x"), len(cpus))
    return DeviceProfile(
        **{
            **p.__dict__,
            "soc": host_cpu_model(),
            "clusters": clusters,
            "modes": modes,
            "default_mode": "1t",
        }
    )
