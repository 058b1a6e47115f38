"""A non-editable install finds the shipped SAE bundle: build the wheel, install it into a fresh venv, resolve
``RunConfig()`` there (issue 20). Resolving a configuration needs no torch, so the venv needs no dependencies."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CHECK = """
import json, sys
from pathlib import Path
import saemui
from saemui import RunConfig
bundle = Path(RunConfig().resolved().saes)
man = json.loads((bundle / "manifest.json").read_text())
missing = [e["path"] + "/" + f for e in man["saes"] for f in e.get("files", {}) if not (bundle / e["path"] / f).is_file()]
print(json.dumps({"package": saemui.__file__, "bundle": str(bundle), "model": man["model"]["hf_id"],
                  "n_saes": len(man["saes"]), "missing": missing, "torch": "torch" in sys.modules}))
"""


# ~25 s on a loaded 2-core machine (copy, wheel of ~66 MB, install): not marked slow
def test_wheel_install_finds_the_shipped_bundle(tmp_path: Path) -> None:
    if not any((REPO / "saes").glob("*/manifest.json")):
        pytest.skip("no shipped bundle in this checkout")
    # build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "runs", "build", "*.egg-info", "__pycache__", "notebooks", "figures"
    )
    shutil.copytree(REPO, src, symlinks=True, ignore=ignore)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SAEMUI_SAES")}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", str(src), "-w", str(tmp_path / "dist")],
                   check=True, env=env, cwd=tmp_path)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("saemui-*.whl")
    size_mb = wheel.stat().st_size / 2**20
    # PyPI refuses files over 100 MB by default
    assert size_mb < 100, f"wheel is {size_mb:.0f} MB"
    with zipfile.ZipFile(wheel) as zf:
        assert any(n.startswith("saemui/bundled/") and n.endswith("manifest.json") for n in zf.namelist())

    venv.create(tmp_path / "venv", system_site_packages=True, with_pip=False)
    py = tmp_path / "venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True, env=env).stdout.strip()  # fmt: skip
    # the test runner's pip installs into the new environment (the venv has no pip of its own)
    subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", "--target", site, str(wheel)],
                   check=True, env=env, cwd=tmp_path)  # fmt: skip
    out = subprocess.run(
        [str(py), "-c", CHECK], check=True, capture_output=True, text=True, env=env, cwd=tmp_path
    )
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(info["package"]).is_relative_to(tmp_path / "venv"), info
    assert Path(info["bundle"]).is_relative_to(tmp_path / "venv"), info
    assert (
        info["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and info["n_saes"] > 0 and not info["missing"]
    )
    assert info["torch"] is False
