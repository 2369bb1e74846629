"""``--jobs N``: scanning files in N spawned processes. Each worker rebuilds the parent's
scanner from a picklable plan (the plugins' importable modules, the chosen rule ids, the
options); a plugin that is not an importable module keeps the scan in one process.
"""

from __future__ import annotations

import importlib
import signal
import sys
import types
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipetune.scan.config import ScanOptions
from pipetune.scan.ruleset import RuleSet, collect_rules
from pipetune.scan.scanner import FileResult, FileScanner

if TYPE_CHECKING:
    from pipetune.core.kernel.manager import PipetunePluginManager


@dataclass(frozen=True)
class WorkerPlan:
    """What a worker process needs to rebuild the parent's scanner (all picklable)."""

    plugins: tuple[tuple[str, str], ...]
    rule_ids: tuple[str, ...]
    all_rule_ids: tuple[str, ...]
    options: ScanOptions
    root: str
    strict: bool
    sys_path: tuple[str, ...]


def worker_plan(
    pm: PipetunePluginManager,
    chosen: RuleSet,
    options: ScanOptions,
    root: Path,
    all_rule_ids: frozenset[str],
) -> tuple[WorkerPlan | None, str]:
    plugins: list[tuple[str, str]] = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        hooks = {caller.name for caller in pm.get_hookcallers(plugin) or ()}
        if not hooks & {"scan_rules", "scan_file"}:
            continue
        module = getattr(plugin, "__name__", None)
        if not isinstance(plugin, types.ModuleType) or sys.modules.get(module or "") is not plugin:
            return None, f"plugin {name!r} is not an importable module"
        plugins.append((name, plugin.__name__))
    plan = WorkerPlan(
        plugins=tuple(plugins),
        rule_ids=tuple(chosen.rules),
        all_rule_ids=tuple(sorted(all_rule_ids)),
        options=options,
        root=str(root),
        strict=pm.strict,
        sys_path=tuple(sys.path),
    )
    return plan, ""


_WORKER: FileScanner | None = None


def _init_worker(plan: WorkerPlan) -> None:
    """Runs once in each worker: the same plugins, the same rules, the same options."""
    global _WORKER
    # The parent handles Ctrl-C and stops the pool; a worker must not die with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for entry in plan.sys_path:
        if entry not in sys.path:
            sys.path.append(entry)
    from pipetune.core.kernel.manager import PipetunePluginManager

    pm = PipetunePluginManager(strict=plan.strict)
    for name, module in plan.plugins:
        pm.load_plugin(name, importlib.import_module(module), source="worker")
    everything = collect_rules(pm)
    wanted = set(plan.rule_ids)
    rules = {rule_id: loaded for rule_id, loaded in everything.rules.items() if rule_id in wanted}
    _WORKER = FileScanner.from_manager(pm, rules, options=plan.options, root=Path(plan.root))
    _WORKER.all_rule_ids = frozenset(plan.all_rule_ids)


def _scan_in_worker(path: Path) -> FileResult:
    assert _WORKER is not None, "worker not initialized"
    return _WORKER.scan_path(path)


def scan_parallel(
    plan: WorkerPlan, files: list[Path], jobs: int
) -> Generator[FileResult, None, None]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # Spawned, not forked: workers start clean (no inherited threads or locks) and import
    # only what scanning needs, as every process pipetune starts should.
    context = multiprocessing.get_context("spawn")
    chunksize = max(1, min(64, len(files) // (jobs * 8)))
    pool = ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=_init_worker, initargs=(plan,)
    )
    try:
        yield from pool.map(_scan_in_worker, files, chunksize=chunksize)
    except BaseException:  # Ctrl-C (or the consumer stopped): do not wait for the queue
        # (the processes first: shutdown() drops the executor's references to them)
        processes = list((getattr(pool, "_processes", None) or {}).values())
        for process in processes:
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
