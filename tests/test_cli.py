import json
import subprocess
import sys

from toolkit.cli.main import main


def test_models_json(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows][:2] == ["elasticvit_t0", "elasticvit_t1"]
    assert rows[0]["mflops"] == 37.37 and rows[0]["params_m"] > 5


def test_flops_of_a_file_and_bad_input(tmp_path, capsys):
    from toolkit.space import SPACE

    SPACE.max().save(tmp_path / "max.json")
    assert main(["flops", str(tmp_path / "max.json"), "--json"]) == 0
    assert round(json.loads(capsys.readouterr().out)["mflops"], 2) == 3191.46
    bad = SPACE.max().to_dict()
    bad["resolution"] = 100
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert main(["flops", str(tmp_path / "bad.json")]) == 2
    assert "resolution = 100 is not allowed" in capsys.readouterr().err


def test_sample_window(capsys):
    assert main(["sample", "-n", "3", "--mflops", "300", "320", "--seed", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(300 <= json.loads(x)["mflops"] <= 320 for x in lines)


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "toolkit.cli.main", "models", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "default: *" in out
