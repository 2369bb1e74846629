"""Cross-input batching for a stage written for one input at a time.

A stage like ``classify(text, *, tokenizer, model)`` tokenizes one document and calls its
model on a batch of one: the model accepts a batch, the code does not. A
:class:`CoalescedBatchFn` gives such a stage a ``batch_fn`` without touching its code. For
a group of inputs it runs the stage's own function once per input, each on a worker thread
of its own, *one at a time*: a baton passes from worker to worker, so the user's code never
runs concurrently (a tokenizer that is not thread-safe stays safe). A worker gives the
baton back when it calls a coalesced component (the model, through a proxy in its slot) or
when it finishes; once every worker has done one or the other, the calling thread makes
one batched call for all the waiting workers (:mod:`.batchcalls` stacks and pads their
arguments and cuts the result back) and resumes each with its own rows. A component's
``generate`` is coalesced the same way (:mod:`.generatecalls`: prompts padded on the left,
each row cut back to what a call of its own returns), so a plain ``model.generate`` stage
serves several requests in one batched decode.

Inputs are ordered by length within the window the runtime hands over (the serving batch)
before they are cut into groups, so a group holds inputs of similar length and pads little;
the outputs come back in the original order. The batched calls run in the calling thread,
under the grad mode the workers asked for (``torch.inference_mode()`` when the change
says so), with that thread's library thread settings.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from pipetune.core.kernel.model import Stage
from pipetune.plugins.generic.batchcalls import known_widths, merge_calls, split_output
from pipetune.plugins.generic.cache import Unhashable, name_after
from pipetune.plugins.generic.callcache import CallCache, call_key, copied
from pipetune.plugins.generic.generatecalls import merge_generate_calls, split_generated

META_KEY = "generic.cross_input_batching"
GRAD_MODES = (None, "no_grad", "inference_mode")

_local = threading.local()


@dataclass
class _Request:
    worker: int
    slot: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    grad: bool | None
    method: str = "__call__"
    result: Any = None
    error: BaseException | None = None
    done: bool = False


class _Signal:
    """A one-waiter wake-up: ``wait`` blocks until another thread calls ``wake`` (a lock
    used as a binary semaphore: the cheapest hand-off between two threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def wake(self) -> None:
        self._lock.release()

    def wait(self) -> None:
        self._lock.acquire()


class _Group:
    """One group of inputs run together: the baton, passed by waking exactly one thread,
    and the calls waiting on a component."""

    def __init__(self, size: int):
        self.size = size
        self.wakes = [_Signal() for _ in range(size)]
        self.back = _Signal()  # the coordinator's turn
        self.pending: list[_Request] = []
        self.outputs: list[Any] = [None] * size
        self.errors: list[BaseException | None] = [None] * size

    # -- worker side ---------------------------------------------------------------------
    def work(
        self, index: int, fn: Callable[..., Any], item: Any, kwargs: Mapping[str, Any]
    ) -> None:
        self.wakes[index].wait()
        _local.group, _local.worker = self, index
        try:
            self.outputs[index] = fn(item, **kwargs)
        except BaseException as exc:  # handed to the caller, who raises the first one
            self.errors[index] = exc
        finally:
            _local.group = None
            self.back.wake()

    def call(
        self, slot: str, args: tuple[Any, ...], kwargs: dict[str, Any], method: str = "__call__"
    ) -> Any:
        index = _local.worker
        request = _Request(index, slot, args, kwargs, _grad_enabled(), method)
        self.pending.append(request)  # only the baton holder runs: no lock needed
        self.back.wake()  # the baton goes back to the coordinator
        self.wakes[index].wait()
        if request.error is not None:
            raise request.error
        return request.result

    # -- coordinator side ----------------------------------------------------------------
    def drive(self, execute: Callable[[list[_Request]], None]) -> None:
        """Pass the baton to every runnable worker in turn; when all of them wait on a
        component or have finished, execute the waiting calls; until all have finished."""
        runnable = list(range(self.size))
        while runnable:
            for index in runnable:
                self.wakes[index].wake()
                self.back.wait()
            batch, self.pending = self.pending, []
            if not batch:
                return
            execute(batch)
            runnable = sorted({request.worker for request in batch})


def _distinct_requests(
    requests: list[_Request],
) -> tuple[list[_Request], list[tuple[_Request, _Request]]]:
    """The requests with distinct content, and (repeat, its first) for the others."""
    first: dict[bytes, _Request] = {}
    distinct: list[_Request] = []
    copies: list[tuple[_Request, _Request]] = []
    for request in requests:
        try:
            key = call_key(request.args, request.kwargs)
        except Unhashable:
            distinct.append(request)
            continue
        if key in first:
            copies.append((request, first[key]))
        else:
            first[key] = request
            distinct.append(request)
    return distinct, copies


def _grad_enabled() -> bool | None:
    torch = sys.modules.get("torch")
    return None if torch is None else bool(torch.is_grad_enabled())


class CoalescingProxy:
    """What a worker sees in a coalesced slot: calls join the group's batched call;
    attribute reads go to the component (``model.config``, ``model.device``)."""

    def __init__(self, target: Any, slot: str):
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_slot", slot)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        group = getattr(_local, "group", None)
        if group is None:  # not inside a coalesced run (another thread of the user's)
            return self._target(*args, **kwargs)
        return group.call(self._slot, args, kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        group = getattr(_local, "group", None)
        if group is None:
            return self._target.generate(*args, **kwargs)
        return group.call(self._slot, args, kwargs, "generate")

    @property
    def __pipetune_wrapped__(self) -> Any:
        return self._target

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    def __repr__(self) -> str:
        return f"CoalescingProxy({self._target!r})"


def text_length(item: Any, limit: int = 64) -> int:
    """A cheap length of an input for ordering: its characters (bytes), summed over the
    strings inside a mapping or a sequence; the length of any other sized input."""
    if isinstance(item, str | bytes | bytearray):
        return len(item)
    total = 0
    found = False
    for text in _strings(item, limit):
        total += len(text)
        found = True
    if found:
        return total
    try:
        return len(item)
    except TypeError:
        return 0


def _strings(value: Any, limit: int) -> Iterator[str | bytes]:
    stack, seen = [value], 0
    while stack and seen < limit:
        item = stack.pop()
        seen += 1
        if isinstance(item, str | bytes):
            yield item
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


class CoalescedBatchFn:
    """``batch_fn(items, **slots)`` for a one-at-a-time stage function ``fn``: groups of at
    most ``batch_size`` inputs, ordered by ``length`` within the window, each group's calls
    to the ``coalesce`` slots made as one batched call (see the module docstring)."""

    def __init__(
        self,
        fn: Callable[..., Any],
        coalesce: Sequence[str],
        *,
        batch_size: int,
        grad_mode: str | None = None,
        length: Callable[[Any], int] | None = text_length,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if grad_mode not in GRAD_MODES:
            raise ValueError(f"grad_mode must be one of {GRAD_MODES}, not {grad_mode!r}")
        self.fn = fn
        self.coalesce = tuple(coalesce)
        self.batch_size = int(batch_size)
        self.grad_mode = grad_mode
        self.length = length
        self.calls = 0  # batched component calls made (for tests and notes)
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        name_after(self, fn, "coalesced")

    def __call__(self, items: Sequence[Any], /, **slots: Any) -> list[Any]:
        items = list(items)
        order = list(range(len(items)))
        if self.length is not None:
            keys = [self.length(item) for item in items]
            order.sort(key=keys.__getitem__)
        outputs: list[Any] = [None] * len(items)
        with self._lock:  # one group at a time: the pool holds batch_size workers
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                results = self._run_group([items[i] for i in chunk], slots)
                for index, value in zip(chunk, results, strict=True):
                    outputs[index] = value
        return outputs

    def _run_group(self, group_items: list[Any], slots: Mapping[str, Any]) -> list[Any]:
        if len(group_items) == 1 and self.grad_mode is None:
            return [self.fn(group_items[0], **slots)]
        kwargs = dict(slots)
        targets = {name: slots[name] for name in self.coalesce if name in slots}
        for name, target in list(targets.items()):
            if isinstance(target, CallCache):  # its hits answered first, its misses batched
                targets[name] = target.__pipetune_wrapped__
                kwargs[name] = target.rewrap(CoalescingProxy(targets[name], name))
            else:
                kwargs[name] = CoalescingProxy(target, name)
        group = _Group(len(group_items))
        pool = self._workers()
        futures = [
            pool.submit(group.work, i, self.fn, item, kwargs) for i, item in enumerate(group_items)
        ]
        group.drive(lambda batch: self._execute(batch, targets))
        for future in futures:
            future.result()
        for error in group.errors:
            if error is not None:
                raise error
        return group.outputs

    def _workers(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self.batch_size, thread_name_prefix="pipetune-coalesce"
            )
        return self._pool

    def _execute(self, batch: list[_Request], targets: Mapping[str, Any]) -> None:
        by_call: dict[tuple[str, str], list[_Request]] = {}
        for request in batch:
            by_call.setdefault((request.slot, request.method), []).append(request)
        for (slot, method), requests in by_call.items():
            target = targets[slot]
            with self._grad_context(requests):
                self._call(target, requests, method)
            for request in requests:
                request.done = True

    def _call(self, target: Any, requests: list[_Request], method: str = "__call__") -> None:
        """One batched call for the distinct requests (identical ones, such as a section
        several documents share, are computed once), or one call each when they cannot
        be merged or the batched call fails."""
        distinct, copies = _distinct_requests(requests)
        function = target if method == "__call__" else getattr(target, method)
        done = False
        if len(distinct) > 1:
            try:
                parts = self._batched(target, method, distinct)
                if parts is not None:
                    self.calls += 1
                    for request, part in zip(distinct, parts, strict=True):
                        request.result = part
                    done = True
            except Exception:
                pass  # one at a time below: each request gets its own result or error
        if not done:
            for request in distinct:
                try:
                    request.result = function(*request.args, **request.kwargs)
                    self.calls += 1
                except Exception as exc:
                    request.error = exc
        for request, source in copies:
            request.result, request.error = copied(source.result), source.error

    @staticmethod
    def _batched(target: Any, method: str, requests: list[_Request]) -> list[Any] | None:
        """The requests' results from one batched call, or None when they cannot merge."""
        calls = [(r.args, r.kwargs) for r in requests]
        if method == "generate":
            merged_generate = merge_generate_calls(calls, target)
            if merged_generate is None:
                return None
            return split_generated(target.generate(**merged_generate.kwargs), merged_generate)
        merged = merge_calls(calls, known_widths(target))
        if merged is None:
            return None
        return split_output(target(*merged.args, **merged.kwargs), merged)

    def _grad_context(self, requests: list[_Request]) -> AbstractContextManager[Any]:
        torch = sys.modules.get("torch")
        if torch is None:
            return nullcontext()
        if self.grad_mode == "inference_mode":
            return torch.inference_mode()
        if self.grad_mode == "no_grad" or not any(r.grad for r in requests):
            return torch.no_grad()
        return torch.enable_grad()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_lock"] = None
        state["_pool"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def coalesced_stage(
    stage: Stage,
    slots: Sequence[str],
    *,
    batch_size: int,
    grad_mode: str | None = None,
    length: Callable[[Any], int] | None = text_length,
) -> Stage:
    """A copy of one-at-a-time ``stage`` whose ``batch_fn`` batches its calls to the
    components in ``slots`` across inputs (the original is untouched)."""
    missing = [name for name in slots if not stage.injects(name)]
    if missing:
        raise ValueError(
            f"stage {stage.name!r}: its function does not take {', '.join(missing)} as "
            "keyword arguments, so calls to them cannot be batched"
        )
    batch_fn = CoalescedBatchFn(
        stage.fn, slots, batch_size=batch_size, grad_mode=grad_mode, length=length
    )
    note = {"slots": list(slots), "batch_size": batch_size, "grad_mode": grad_mode}
    return stage.evolve(batch_fn=batch_fn).noted(**{META_KEY: note})


def batchable_slots(stage: Stage) -> list[str]:
    """The injected slots holding a torch module, or a stand-in for one that takes the
    same calls (a compiled model naming its eager ``source``, a proxy naming what it
    wraps): components that accept a batch."""
    torch = sys.modules.get("torch")
    if torch is None:
        return []

    def module_like(value: Any) -> bool:
        if isinstance(value, torch.nn.Module):
            return True
        inner = getattr(value, "source", None) or getattr(value, "__pipetune_wrapped__", None)
        return callable(value) and isinstance(inner, torch.nn.Module)

    return [
        name for name, value in stage.slots.items() if module_like(value) and stage.injects(name)
    ]
