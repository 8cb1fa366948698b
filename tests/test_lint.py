import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():  # ruff comes with the dev extra of the README's install
    r = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
