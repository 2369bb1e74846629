"""The plugin imports and answers its cheap hooks without any optional dependency."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


@pytest.mark.slow
def test_modules_import_without_optional_dependencies() -> None:
    code = textwrap.dedent(
        """
        import sys
        for name in ("cv2", "torch", "torchvision", "PIL", "skimage", "imageio", "nvidia",
                     "nvidia.dali"):
            sys.modules[name] = None  # any import of them now fails
        import importlib
        for module in ("plugin", "blocks", "recognize", "reduced_decode", "dali", "gpu_decode",
                       "frame_skip", "fidelity", "facts", "proposals", "changes", "parallel",
                       "inputs", "calibration", "changes.reduced_decode", "changes.dali_decode",
                       "changes.gpu_decode", "changes.parallel_decode", "changes.motion_gate",
                       "changes.frame_stride", "code_decode", "rebind", "frame_items"):
            importlib.import_module(f"pipetune.plugins.vision.{module}")
        for module in ("data", "models", "demo"):
            importlib.import_module(f"pipetune.demos.vision.{module}")
        from pipetune.core.kernel.manager import get_plugin_manager
        from pipetune.plugins.vision.dali import dali_availability
        from pipetune.plugins.vision.gpu_decode import nvjpeg_availability
        pm = get_plugin_manager(entry_points=False)
        assert not dali_availability() and "pipetune[vision]" in dali_availability().install
        assert not nvjpeg_availability()
        fid = pm.compare("frame_labels", [["a", "b"]], [["a", "b"]])
        assert fid.value == 1.0 and fid.judged_by == "vision"
        assert {c.id for c in pm.change_types().values() if c.owner == "vision"} == {
            "vision.reduced_decode", "vision.dali_decode", "vision.gpu_decode",
            "vision.parallel_decode", "vision.motion_gate", "vision.frame_stride"}
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
