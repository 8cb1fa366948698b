"""What every device offers (a phone over adb, or this machine) and the errors they raise."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from device_profiles import DeviceProfile

from .benchmark_model import BenchmarkFlags


class DeviceError(RuntimeError):
    """A device could not do what was asked; the message says what to do."""


class DeviceGone(DeviceError):
    """The device disconnected or is not usable (offline, unauthorized)."""


class DeviceTimeout(DeviceError):
    """A command ran past its timeout and was killed."""


class BinaryError(DeviceError):
    """The benchmark_model binary is missing, of the wrong kind, or fails its hash check."""


@dataclass
class ShellResult:
    returncode: int
    stdout: str
    stderr: str = ""


@dataclass(frozen=True)
class RunSpec:
    """How to measure: everything that must match for two results to be comparable."""

    mode: str = ""  # a profile mode name (sets mask and threads); "" = the profile's default
    mask: str = ""  # explicit taskset mask overrides the mode's
    threads: int = 0  # explicit thread count overrides the mode's
    warmup_runs: int = 5
    num_runs: int = 50
    repeats: int = 5  # separate benchmark_model invocations; statistics are over these
    min_secs: float = 0.0  # each invocation also runs at least this long: spreads the runs
    # over time, past a shared machine's slow phases (seconds long); 0 = exactly num_runs
    op_profiling: bool = False
    delegate: str = "xnnpack"
    timeout_s: float = 300.0  # per invocation
    max_cooldown_s: float = 120.0  # how long to wait for a throttled phone to cool down
    cooldown_poll_s: float = 5.0

    def resolve(self, profile: DeviceProfile) -> tuple[str, int, str]:
        """(mask, threads, mode name) for this profile."""
        mode = profile.mode(self.mode or None)
        mask = (self.mask or mode.mask).lower()
        threads = self.threads or mode.threads
        try:
            cpus = bin(int(mask, 16)).count("1")
        except ValueError as e:
            raise DeviceError(f"mask = {mask!r} is not hex (bit i = cpu i, e.g. 70)") from e
        if threads > cpus:
            raise DeviceError(
                f"threads = {threads} exceeds the {cpus} cpu(s) in mask {mask}; lower --threads "
                "or widen --mask"
            )
        name = self.mode or profile.default_mode
        if self.mask or self.threads:
            name = f"custom:{mask}/{threads}t"
        return mask, threads, name

    def flags(self, graph: str, threads: int, csv: str | None = None) -> BenchmarkFlags:
        return BenchmarkFlags(
            graph=graph, num_threads=threads, warmup_runs=self.warmup_runs,
            num_runs=self.num_runs, min_secs=self.min_secs, enable_op_profiling=self.op_profiling,
            profiling_output_csv_file=csv, use_gpu=self.delegate == "gpu",
            use_nnapi=self.delegate == "nnapi", use_xnnpack=self.delegate == "xnnpack",
        )


@dataclass
class Snapshot:
    """Thermal and frequency state at one moment (see hygiene.py)."""

    thermal_status: int | None = None  # 0 NONE … 6 SHUTDOWN (Android thermalservice)
    max_temp_c: float | None = None
    cur_khz: dict[int, int] = field(default_factory=dict)
    scaling_max_khz: dict[int, int] = field(default_factory=dict)
    cpuinfo_max_khz: dict[int, int] = field(default_factory=dict)
    governor: dict[int, str] = field(default_factory=dict)

    def capped(self) -> list[str]:
        """CPUs whose scaling_max_freq sits below their hardware maximum (thermal capping)."""
        return [
            f"cpu{c}:{self.scaling_max_khz[c]}<{m}"
            for c, m in sorted(self.cpuinfo_max_khz.items())
            if c in self.scaling_max_khz and self.scaling_max_khz[c] < m
        ]

    @property
    def throttled(self) -> bool:
        return (self.thermal_status or 0) >= 2 or bool(self.capped())

    def to_dict(self) -> dict:
        return {
            "thermal_status": self.thermal_status, "max_temp_c": self.max_temp_c,
            "cur_khz": self.cur_khz, "scaling_max_khz": self.scaling_max_khz,
            "governor": sorted(set(self.governor.values())), "capped": self.capped(),
        }


class Device(Protocol):
    serial: str
    profile: DeviceProfile

    def fingerprint(self) -> dict: ...

    def runtime_id(self) -> tuple[str, str]:
        """(runtime name, sha256 of the benchmark binary or runtime version)."""
        ...

    def prepare_model(self, local_path: str) -> str: ...

    def run_benchmark(self, flags: BenchmarkFlags, mask: str, timeout: float) -> str: ...

    def fetch_op_csv(self, remote_csv: str) -> str | None: ...

    def snapshot(self) -> Snapshot: ...

    def cleanup(self) -> None: ...


ACCELERATORS = ("cpu", "gpu", "nnapi")


def resolve_delegate(accelerator: str | None, delegate: str | None, profile) -> str:
    """The delegate to measure with: ``--accelerator`` (cpu = XNNPACK) or ``--delegate``,
    refused before any work when the device's profile does not list it."""
    if accelerator and delegate:
        raise ValueError("give --accelerator or --delegate, not both")
    d = {"cpu": "xnnpack", "gpu": "gpu", "nnapi": "nnapi"}[accelerator] if accelerator \
        else (delegate or "xnnpack")
    allowed = set(profile.delegates) | {"xnnpack", "cpu"}
    if d not in allowed:
        what = "this machine runs LiteRT on its CPU only" if profile.is_host else \
            f"its profile lists {', '.join(profile.delegates)}"
        raise ValueError(f"{profile.name} has no {d} accelerator ({what}); choose one of "
                         f"{', '.join(sorted(allowed))}")
    return d
