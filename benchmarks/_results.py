"""Write one benchmark's section of benchmarks/RESULTS.md, with the date and the machine."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import shlex
import sys
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")

# the benchmarks are entry points: the converter's progress lines off, as evit's CLIs do
os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads)")


def write_section(key: str, title: str, body: str) -> None:
    """Replace (or append) the section between ``<!-- begin KEY -->`` and ``<!-- end KEY -->``."""
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    cmd = shlex.join(["python", f"benchmarks/{key}.py", *sys.argv[1:]])  # with its arguments
    block = (f"<!-- begin {key} -->\n## {title}\n\n_Measured {stamp} on {machine()}; "
             f"command: `{cmd}`._\n\n{body.strip()}\n<!-- end {key} -->")
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n" \
        "Each section is rewritten by the script named in it.\n"
    pat = re.compile(rf"<!-- begin {re.escape(key)} -->.*?<!-- end {re.escape(key)} -->", re.S)
    text = pat.sub(lambda _m: block, text) if pat.search(text) else text.rstrip() + "\n\n" + block
    RESULTS.write_text(text.rstrip() + "\n")
