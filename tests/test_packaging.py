"""Import cost and layout: `import scratchprop` must not import numba."""

import subprocess
import sys


def test_import_does_not_load_numba():
    code = "import sys, scratchprop, scratchprop.numpy; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_kernels_installed_as_subpackage():
    code = "import scratchprop.kernels, os; print(os.path.basename(os.path.dirname(scratchprop.kernels.__file__)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() in ("kernels",)


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "scratchprop", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "scratchprop" in out.stdout
