"""The spaces an index searches in: the MIPS→L2 reduction ranks exactly like inner product,
cosine candidates only where the ranking allows, and the spaces tried follow the norms."""

from __future__ import annotations

import numpy as np
import pytest

faiss = pytest.importorskip("faiss", reason="faiss is an optional dependency (recsys extra)")

from pipetune.core.kernel.errors import ConfigError  # noqa: E402
from pipetune.demos.recsys import data  # noqa: E402
from pipetune.plugins.recsys import ann, ann_build, ann_search, exact_search, spaces  # noqa: E402


@pytest.fixture(scope="module")
def skewed() -> np.ndarray:
    return data.latent_factors(12_000, 32, norm_spread=3.7)


def test_the_generated_catalog_has_the_norm_spread_asked_for(skewed) -> None:
    stats = spaces.norm_stats(skewed)
    assert stats["min"] >= 1.0 - 1e-4 and stats["max"] <= 3.7 + 1e-3
    assert 3.5 < stats["spread"] <= 3.7 + 1e-3 and stats["p01"] < stats["p99"]


def test_mips_to_l2_reduction_ranks_exactly_like_inner_product(skewed) -> None:
    queries = data.latent_queries(20, 32)
    before = skewed.copy()
    augmented = spaces.index_vectors(skewed, "ip", "mips_l2")
    assert augmented.shape == (12_000, 33) and np.array_equal(before, skewed)
    norms = np.linalg.norm(augmented, axis=1)
    assert np.allclose(norms, norms.max(), rtol=1e-4)  # every item lies on one sphere
    flat = faiss.IndexFlatL2(33)
    flat.add(augmented)
    distances, ids = flat.search(spaces.query_vectors(queries, "ip", "mips_l2"), 50)
    exact = exact_search.top_k_rows(queries @ skewed.T, 50)
    assert exact_search.per_query_recall(exact, ids).mean() >= 0.999
    recovered = spaces.inner_products_from_l2(distances, queries, spaces.max_sq_norm(skewed))
    direct = np.take_along_axis(queries @ skewed.T, ids, axis=1)
    assert np.allclose(recovered, direct, rtol=1e-3, atol=1e-3)


def test_a_searcher_over_the_reduction_answers_in_inner_products(skewed) -> None:
    spec = ann.IndexSpec("ivf_flat", "ip", 32, nlist=64, train_size=4000, space="mips_l2")
    index, info = ann_build.build_index(skewed, spec)
    assert int(index.d) == 33 and info.vectors == 12_000
    searcher = ann_search.AnnSearcher(index, skewed, spec, runtime=64)  # every list: exact
    queries = data.latent_queries(10, 32)
    distances, ids = searcher.search(queries, 20)
    exact = exact_search.top_k_rows(queries @ skewed.T, 20)
    assert exact_search.per_query_recall(exact, ids).mean() >= 0.999
    assert np.all(np.diff(distances, axis=1) <= 1e-4)  # descending, like IndexFlatIP
    assert "MIPS→L2, 33-d" in spec.describe()


def test_spaces_follow_the_metric_and_the_norms(skewed, catalog) -> None:
    assert [s for s, _ in spaces.candidate_spaces("ip", spaces.norm_stats(catalog))] == [
        "native"
    ]  # unit vectors: every space ranks alike
    uneven = [s for s, _ in spaces.candidate_spaces("ip", spaces.norm_stats(skewed))]
    assert uneven == ["native", "mips_l2", "normalized"]
    assert [s for s, _ in spaces.candidate_spaces("l2", spaces.norm_stats(skewed))] == ["native"]
    with pytest.raises(ConfigError, match="mips_l2 index space is for inner-product"):
        ann.IndexSpec("hnsw", "l2", 32, space="mips_l2")
    with pytest.raises(ConfigError, match="index space must be one of"):
        ann.IndexSpec("hnsw", "ip", 32, space="warped")


def test_cosine_candidates_only_where_the_ranking_allows(skewed, catalog) -> None:
    queries = data.latent_queries(16, 32)
    reference = exact_search.top_k_rows(queries @ skewed.T, 20)
    depth, shares = spaces.cosine_depth(skewed, queries, reference, [20, 40], 0.95)
    assert depth is None and shares[20] < 0.5  # long vectors win the inner product
    unit_queries = catalog[:16]
    same = exact_search.top_k_rows(unit_queries @ catalog.T, 20)
    assert spaces.cosine_depth(catalog, unit_queries, same, [20, 40], 0.95) == (20, {20: 1.0})
