"""`tinyseek params` as a user runs it: a real subprocess, JSON out, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.fixtures import tiny_config
from tinyseek.cli import main


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tinyseek", *args], capture_output=True, text=True, timeout=120
    )


def test_params_deepseek_v3_json():
    out = run("params", "deepseek-v3", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert abs(data["total"] / 671.0e9 - 1) < 0.002
    assert abs(data["activated"] / 37.5e9 - 1) < 0.01
    assert abs(data["mtp"] / 11.6e9 - 1) < 0.01
    assert data["latent_cache_bytes_per_token"] == 70_272


def test_params_reads_a_model_directory(tmp_path, capsys):
    tiny_config().save_pretrained(tmp_path)
    assert main(["params", str(tmp_path)]) == 0
    assert "latent KV cache" in capsys.readouterr().out


def test_params_bad_input_is_one_clear_line():
    out = run("params", "deepseek-v9")
    assert out.returncode == 2
    assert "neither a preset" in out.stderr and "Traceback" not in out.stderr


def test_every_command_has_help():
    out = run("--help")
    assert out.returncode == 0 and "params" in out.stdout
    assert run("params", "--help").returncode == 0
