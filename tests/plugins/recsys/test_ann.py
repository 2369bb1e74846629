"""The index choice rule, building, saving, loading and searching with exact re-rank."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

faiss = pytest.importorskip("faiss", reason="faiss is an optional dependency (recsys extra)")

from pipetune.plugins.recsys import ann, ann_build, ann_search, exact_search  # noqa: E402


def test_choice_rule() -> None:
    small = ann.choose_index(5_000, 64, "ip")
    assert small.spec is None and "under 10,000" in small.reason
    quick = ann.choose_index(50_000, 64, "ip", hnsw_build_s=3.0, memory_budget_bytes=10**10)
    assert quick.spec is not None and quick.spec.kind == "hnsw"
    slow = ann.choose_index(500_000, 128, "ip", hnsw_build_s=100.0, memory_budget_bytes=10**10)
    assert slow.spec is not None and slow.spec.kind == "ivf_flat" and slow.spec.nlist == 2048
    assert "exceeds the 30 s budget" in slow.reason
    tight = ann.choose_index(500_000, 128, "ip", hnsw_build_s=1.0, memory_budget_bytes=100 << 20)
    assert tight.spec is not None and tight.spec.kind == "ivf_pq" and tight.spec.pq_m == 32
    assert "memory budget" in tight.reason
    assert ann.default_nlist(20_000) == 512 and ann.default_pq_m(96) == 24


def test_hnsw_build_estimate_fits_the_growth_of_two_samples(monkeypatch) -> None:
    """A fake faiss whose build takes (size/1000)^1.5 fake seconds: the fit through the two
    samples recovers the exponent and extrapolates exactly; a catalog no larger than the
    big sample is simply built."""
    clock = {"now": 0.0}

    class FakeHNSW:
        def __init__(self, dim, m, metric):
            self.hnsw = type("Params", (), {})()

        def add(self, vectors):
            clock["now"] += (len(vectors) / 1000) ** 1.5

    fake = type("Faiss", (), {"IndexHNSWFlat": FakeHNSW, "METRIC_INNER_PRODUCT": 0})
    monkeypatch.setattr(ann, "load_faiss", lambda: fake)
    monkeypatch.setattr(ann, "time", SimpleNamespace(perf_counter=lambda: clock["now"]))
    items = np.zeros((64_000, 4), dtype=np.float32)
    assert ann.estimate_hnsw_build_s(items, samples=(1000, 4000)) == pytest.approx(64**1.5)
    assert ann.estimate_hnsw_build_s(items[:3000], samples=(1000, 4000)) == pytest.approx(3**1.5)


def test_the_estimate_measures_on_the_threads_the_build_will_use(monkeypatch) -> None:
    """The sample builds run on the count given (the build's own), not on whatever faiss is
    set to when the profile runs."""
    import contextlib

    from pipetune.plugins.recsys import threads as recsys_threads

    used: list[int | None] = []

    @contextlib.contextmanager
    def counted(count):
        used.append(count)
        yield

    monkeypatch.setattr(recsys_threads, "faiss_thread_count", counted)
    items = np.random.default_rng(0).standard_normal((3000, 8)).astype(np.float32)
    ann.estimate_hnsw_build_s(items, samples=(1000, 2000), threads=3)
    assert used and set(used) == {3}


def test_an_index_is_built_on_every_usable_core_whatever_faiss_is_pinned_to(
    tmp_path, monkeypatch
) -> None:
    from pipetune.core.kernel.artifacts import ArtifactStore
    from pipetune.plugins.recsys.changes import common
    from pipetune.plugins.recsys.threads import faiss_thread_count

    monkeypatch.setattr(common, "build_threads", lambda: 2)
    items = np.random.default_rng(1).standard_normal((500, 8)).astype(np.float32)
    spec = ann.IndexSpec(kind="hnsw", metric="ip", dim=8, hnsw_m=8)
    with faiss_thread_count(1):  # searches pinned to one thread, as the tune step does
        _, info, _, reused = common.index_artifact(ArtifactStore(tmp_path), items, spec, print)
        assert faiss.omp_get_max_threads() == 1  # the pin is restored after the build
    assert not reused and info["threads"] == 2


@pytest.mark.parametrize("kind", ["hnsw", "ivf_flat", "ivf_pq"])
@pytest.mark.slow
def test_build_save_load_search(kind, catalog, tmp_path) -> None:
    spec = ann.choose_index(len(catalog), catalog.shape[1], "ip", kind=kind).spec
    if kind == "ivf_pq":  # keep the test fast: fewer lists, 4-bit codes
        spec = ann.IndexSpec(
            "ivf_pq", "ip", catalog.shape[1], nlist=64, pq_m=8, pq_nbits=4, train_size=4000
        )
    before = catalog.copy()
    index, info = ann_build.build_index(catalog, spec)
    assert np.array_equal(before, catalog)  # the catalog is never modified
    assert info.vectors == len(catalog) and info.index_bytes > 0 and info.seconds > 0
    path = ann_build.save_index(index, info, tmp_path / "index.faiss")
    loaded = ann_build.load_index(path)
    assert ann_build.load_build_info(path)["spec"]["kind"] == kind
    queries = catalog[:20] + 0.05
    exact = exact_search.top_k_rows(exact_search.exact_scores(catalog, queries, "ip"), 10)
    runtime = {"hnsw": 128, "ivf_flat": 32, "ivf_pq": 32}[kind]
    searcher = ann_search.AnnSearcher(loaded, catalog, spec, runtime, k_prime=80)
    distances, ids = searcher.search(queries, 10)
    assert ids.shape == (20, 10)
    assert exact_search.per_query_recall(exact, ids).mean() > 0.8
    # re-ranked distances are exact inner products, best first
    exact_d = np.einsum("qkd,qd->qk", catalog[ids], queries)
    assert np.allclose(distances, exact_d, atol=1e-4)
    assert (np.diff(distances, axis=1) <= 1e-6).all()


def test_searcher_stands_in_for_a_flat_index(catalog) -> None:
    flat = faiss.IndexFlatL2(catalog.shape[1])
    flat.add(catalog)
    spec = ann.IndexSpec("hnsw", "l2", catalog.shape[1], hnsw_m=16)
    index, _ = ann_build.build_index(catalog, spec)
    searcher = ann_search.AnnSearcher(index, catalog, spec, 64, k_prime=20)
    queries = catalog[:5] + 0.01
    _, i_flat = flat.search(queries, 10)
    d_ann, i_ann = searcher.search(queries, 10)
    assert i_ann.shape == i_flat.shape
    assert exact_search.per_query_recall(i_flat, i_ann).mean() > 0.9
    assert (np.diff(d_ann, axis=1) >= -1e-6).all()  # L2 distances ascending, like faiss
    assert searcher.ntotal == flat.ntotal and searcher.d == flat.d


def test_flat_index_vectors_are_a_view(catalog) -> None:
    flat = faiss.IndexFlatIP(catalog.shape[1])
    flat.add(catalog)
    view = exact_search.as_matrix(flat, "slot 'index'")
    assert np.array_equal(view, catalog)


def test_missing_index_file_is_clear(tmp_path) -> None:
    from pipetune.core.kernel.errors import ConfigError

    with pytest.raises(ConfigError, match="re-run the tune step"):
        ann_build.load_index(tmp_path / "nope.faiss")
