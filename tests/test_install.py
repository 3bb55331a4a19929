"""hcl_core as a library: a lazy public API, and `pip install .` into a fresh environment used by foreign code."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, *, cwd: Path, python: str = sys.executable, timeout: float = 300) -> str:
    out = subprocess.run([python, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, f"exit {out.returncode}\nstdout:\n{out.stdout}\nstderr:\n{out.stderr[-4000:]}"
    return out.stdout


def test_import_hcl_core_and_its_config_do_not_load_torch_and_every_public_name_resolves(tmp_path):
    out = _python(f"""
        import json, sys
        sys.path.insert(0, {str(ROOT)!r})
        import hcl_core, hcl_core.config, hcl_core.export, hcl_core.export.command, hcl_core.tracking
        light = "torch" not in sys.modules
        names = sorted(hcl_core.__all__)
        listed = set(dir(hcl_core)) >= set(names)
        resolved = {{n: type(getattr(hcl_core, n)).__name__ for n in names}}
        try:
            hcl_core.no_such_name
            missing = "no error"
        except AttributeError as e:
            missing = str(e)
        print(json.dumps({{"light": light, "listed": listed, "resolved": resolved, "missing": missing,
                          "streamlit": "streamlit" in sys.modules}}))
    """, cwd=tmp_path)
    got = json.loads(out.splitlines()[-1])
    assert got["light"], "import hcl_core (or config, export, export.command, tracking) loaded torch"
    assert got["listed"]
    assert got["missing"] == "module 'hcl_core' has no attribute 'no_such_name'"
    assert not got["streamlit"], "the library imported streamlit"
    kinds = got["resolved"]
    assert kinds["HCLLoss"] == "type" and kinds["hcl"] == "function" and kinds["load_encoder"] == "function"
    assert kinds["__version__"] == "str"


# A training step of a model that is not ours, with each wrapper, from a folder with no hcl_core in it.
FOREIGN_SCRIPT = """
import json, sys
sys.modules["streamlit"] = None          # any import of streamlit now fails: the library must not need it
import torch
import hcl_core
from hcl_core import InfoNCELoss, DCLLoss, HCLLoss, HUCLLoss, SupConLoss, HardSupConLoss

torch.manual_seed(0)
x = torch.randn(64, 10)
y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()      # 4 classes
out = {"file": hcl_core.__file__, "version": hcl_core.__version__, "losses": {}}
for cls in (InfoNCELoss, DCLLoss, HCLLoss, HUCLLoss, SupConLoss, HardSupConLoss):
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    loss_fn = cls(tau=0.5)
    values, finite = [], True
    for _ in range(30):
        x1 = x + 0.1 * torch.randn_like(x)
        x2 = x + 0.1 * torch.randn_like(x)
        loss = loss_fn(net(x1), net(x2), y)
        opt.zero_grad()
        loss.backward()
        finite &= all(bool(torch.isfinite(p.grad).all()) for p in net.parameters())
        opt.step()
        values.append(float(loss.detach()))
    out["losses"][cls.__name__] = {"first": values[0], "last": sum(values[-5:]) / 5, "finite": finite,
                                   "repr": repr(loss_fn)}
out["streamlit_loaded"] = sys.modules.get("streamlit") is not None
print(json.dumps(out))
"""


def test_pip_install_gives_a_package_whose_losses_train_a_foreign_model(tmp_path):
    # The sources are copied first: a build writes build/ and *.egg-info next to them.
    src = tmp_path / "src"
    src.mkdir()
    shutil.copytree(ROOT / "hcl_core", src / "hcl_core", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    env_dir = tmp_path / "env"
    # No pip of its own (ensurepip's setuptools could not build a wheel): the project's pip,
    # setuptools and dependencies are made visible through a .pth file, so nothing is downloaded.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    site = Path(_python("import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path,
                        python=str(python)).strip())
    (site / "project_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                              "--quiet", str(src)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert install.returncode == 0, install.stderr[-4000:]
    assert (env_dir / "bin" / "hcl").is_file(), "the console script hcl was not installed"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    got = json.loads(_python(FOREIGN_SCRIPT, cwd=elsewhere, python=str(python)).splitlines()[-1])
    assert Path(got["file"]).is_relative_to(site), f"hcl_core came from {got['file']}, not the fresh environment"
    assert got["version"] == _python(f"import sys; sys.path.insert(0, {str(ROOT)!r}); import hcl_core; "
                                     "print(hcl_core.__version__)", cwd=tmp_path).strip()
    assert not got["streamlit_loaded"]
    assert set(got["losses"]) == {"InfoNCELoss", "DCLLoss", "HCLLoss", "HUCLLoss", "SupConLoss", "HardSupConLoss"}
    for name, r in got["losses"].items():
        assert r["finite"], f"{name}: a gradient was not finite"
        assert r["last"] < r["first"] - 0.05, f"{name}: the loss did not decrease ({r['first']:.3f} -> {r['last']:.3f})"
        assert r["repr"].startswith(f"{name}(tau=0.5")

    cli = subprocess.run([str(env_dir / "bin" / "hcl"), "list", "--out", str(tmp_path / "no-runs")],
                         capture_output=True, text=True, timeout=120, cwd=elsewhere)
    assert cli.returncode == 0 and "no runs under" in cli.stdout, cli.stderr

