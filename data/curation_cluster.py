"""Cluster-based retrieval (appendix A.2, after Oquab et al. 2023): k-means over the pool, targets to their
nearest cluster, clusters kept when a target lands in them, sampled with w_c = sum_d w_d * N_{d,c} / N_d.

Embeddings are L2-normalized and clustered on the sphere (inner product), the usual choice for
self-supervised features whose norm carries little meaning.
"""

from __future__ import annotations

import numpy as np


def _as_float32(embeddings: np.ndarray, name: str) -> np.ndarray:
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or not len(embeddings):
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {embeddings.shape}")
    if not np.isfinite(embeddings).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return embeddings


def l2_normalize(embeddings: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.maximum(norms, 1e-12)


def kmeans(embeddings: np.ndarray, num_clusters: int, *, iterations: int = 20, seed: int = 0) -> np.ndarray:
    """(num_clusters, D) unit-norm centroids of spherical k-means (faiss) over the L2-normalized `embeddings`.

    faiss trains on at most 256 points per centroid (its default subsampling), which is what keeps k-means
    affordable at 1e8 points; assignment (`nearest_cluster`) still covers every point.
    """
    import faiss

    points = l2_normalize(_as_float32(embeddings, "pool embeddings"))
    if not 1 <= num_clusters <= len(points):
        raise ValueError(f"cannot make {num_clusters} clusters of {len(points)} pool scenes; use 1..{len(points)}")
    model = faiss.Kmeans(points.shape[1], num_clusters, niter=iterations, seed=seed, spherical=True, verbose=False,
                         min_points_per_centroid=1)
    model.train(points)
    return model.centroids


def nearest_cluster(embeddings: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(N,) index of the centroid of highest cosine similarity to each embedding (exact search)."""
    import faiss

    points = l2_normalize(_as_float32(embeddings, "embeddings"))
    centroids = _as_float32(centroids, "centroids")
    if points.shape[1] != centroids.shape[1]:
        raise ValueError(f"embeddings have dimension {points.shape[1]} but centroids {centroids.shape[1]}")
    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(centroids)
    return index.search(points, 1)[1][:, 0].astype(np.int64)


def cluster_weights(target_clusters: dict[str, np.ndarray], target_weights: dict[str, float], num_clusters: int) -> np.ndarray:
    """(num_clusters,) w_c = sum_d w_d * N_{d,c} / N_d; zero for every cluster no target video landed in.

    Args:
        target_clusters: per target dataset d, the cluster of each of its N_d videos.
        target_weights: w_d per target dataset (Table 11: K710 0.7, SSv2 0.125, COIN 0.125, EpicKitchen 0.05).
        num_clusters: number of pool clusters.
    """
    if set(target_clusters) != set(target_weights):
        raise ValueError(f"targets {sorted(target_clusters)} and weights {sorted(target_weights)} name different datasets")
    weights = np.zeros(num_clusters, dtype=np.float64)
    for name, clusters in target_clusters.items():
        if not len(clusters):
            raise ValueError(f"target {name!r} has no videos")
        weights += target_weights[name] * np.bincount(clusters, minlength=num_clusters) / len(clusters)
    return weights


def retrieval_table(
    pool_clusters: np.ndarray, target_clusters: dict[str, np.ndarray], target_weights: dict[str, float], num_clusters: int
) -> list[dict]:
    """Rows of Table 11: the pool, each target's retrieved clusters and scenes, and the union that is kept."""
    scenes_per_cluster = np.bincount(pool_clusters, minlength=num_clusters)
    rows = [{"target": "uncurated pool", "clusters": num_clusters, "scenes": len(pool_clusters), "weight": None}]
    kept = np.zeros(num_clusters, dtype=bool)
    for name, clusters in target_clusters.items():
        hit = np.zeros(num_clusters, dtype=bool)
        hit[np.unique(clusters)] = True
        kept |= hit
        rows.append({"target": name, "clusters": int(hit.sum()), "scenes": int(scenes_per_cluster[hit].sum()),
                     "weight": target_weights[name]})
    rows.append({"target": "curated (union)", "clusters": int(kept.sum()), "scenes": int(scenes_per_cluster[kept].sum()),
                 "weight": None})
    return rows
