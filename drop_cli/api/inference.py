"""`drop embed`, `drop index`, `drop search`, `drop export`: a trained model on your own crops.

``embed`` writes the features file format for any images (no identities needed), resumably and
incrementally; ``index`` builds (or grows) a faiss index of a features file; ``search`` ranks a
gallery for query images with the distance `drop evaluate` scores, exhaustively or, where the
gallery has an index, over the index's candidates re-scored exactly; ``export`` writes a
self-checked ONNX model. Each takes a checkpoint or, except ``export``, its ``.onnx`` export.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import _ui
from .._distributed import barrier, is_main_process
from .._files import write_csv, write_text
from ..errors import DropError
from ..evaluation.rerank import K1, K2, LAMBDA
from ..evaluation.scoring import DEFAULT_DISTANCE, Rerank, make_setting
from ..features import FeatureFile, extract_to_file, features_complete
from ..features.file import merge_features
from ..features.rows import SplitRows
from ..index import CANDIDATES, GalleryIndex, GallerySearch, build_index, index_path
from ..index import IndexResult as IndexResult  # api.IndexResult, what api.index returns
from ..inference import ModelEmbedder, ReidModel, export_onnx
from ..inference.export import ExportResult
from ..inference.inputs import collect_images, common_folder, image_records, unreadable
from ..inference.model import Embeddings
from ..parts import FIRST_PART
from ..viz.ranking import draw_search
from .data import check_workers

EMBED_DATASET = "images"  # the dataset attribute of a file `drop embed` writes


@dataclass
class EmbedResult:
    features: Path
    split: str
    images: int  # in the split now
    embedded: int  # run through the model by this call
    skipped: list[str]  # unreadable images, left out
    runtime: str
    seconds: float
    already_complete: bool = False

    def to_json(self) -> dict:
        return {
            "features": str(self.features),
            "split": self.split,
            "images": self.images,
            "embedded": self.embedded,
            "skipped": self.skipped,
            "runtime": self.runtime,
            "already_complete": self.already_complete,
            "seconds": round(self.seconds, 3),
        }


def _same_model(file: FeatureFile, model: ReidModel) -> None:
    if file.attrs.get("checkpoint_sha256") != model.spec.checkpoint_sha256:
        raise DropError(
            f"{file.path} was made by another model than {model.source} (checkpoint "
            f"{str(file.attrs.get('checkpoint_sha256'))[:12]}... vs {model.spec.checkpoint_sha256[:12]}...).",
            hint="Embed with the model that made it, or pass --overwrite (embed) / a new --out.",
        )


def embed(
    inputs: list[str | Path],
    *,
    model: str | Path,
    out: str | Path = "embeddings.h5",
    split: str = "gallery",
    pattern: str | None = None,
    batch_size: int = 64,
    workers: int | None = 0,
    parsing: bool = False,
    half: bool = False,
    overwrite: bool = False,
    device: str = "auto",
    progress: bool = True,
) -> EmbedResult:
    """Embed image files, folders or lists of paths into a features file (split ``split``).

    Args:
        model: a checkpoint or its ONNX export.
        pattern: regex with named groups pid and camid for the identities (default: -1 for both).
        workers: image-reading processes (None: the CPU count, at most 8; 0: none).
        parsing: store the predicted label maps.
        half: store the embeddings as float16.
        overwrite: replace ``out`` (default: add only the images it does not hold yet).

    Unreadable images are listed and left out. An interrupted run resumes; a second run on a grown
    folder embeds only the new images and adds them to the file.
    """
    start = time.perf_counter()
    reid = ReidModel.load(model, device=device)
    paths = collect_images(inputs)
    bad = set(unreadable(paths))
    paths = [p for p in paths if p not in bad]
    if bad:
        _ui.warn(
            f"{len(bad)} file(s) are not readable images and are left out, e.g. {', '.join(map(str, sorted(bad)[:3]))}."
        )
    if not paths:
        raise DropError("none of the images can be read.", hint="Check the files.")
    out = Path(out).expanduser()
    old = FeatureFile(out) if out.exists() and not overwrite else None
    if old is not None:
        _same_model(old, reid)
        base = Path(old.attrs["dataset_folder"])
        known = {base / p for p in old.paths(split)} if split in old.splits else set()
        paths = [p for p in paths if p not in known]
        if not paths:
            return EmbedResult(
                out, split, len(known), 0, sorted(map(str, bad)), reid.runtime, time.perf_counter() - start, True
            )
    folder = common_folder(paths)
    records = image_records(paths, folder, pattern)
    dtype = "float16" if half else "float32"
    settings = {
        "checkpoint_sha256": reid.spec.checkpoint_sha256,
        "dataset_folder": str(folder),
        "split": split,
        "paths_sha256": hashlib.sha256("\n".join(r.path for r in records).encode()).hexdigest(),
        "parsing": parsing,
        "dtype": dtype,
        "height": reid.spec.height,
        "width": reid.spec.width,
    }
    attrs = {
        "dataset": EMBED_DATASET,
        "dataset_folder": str(folder),
        "splits": [split],
        "checkpoint": str(reid.source),
        "checkpoint_sha256": reid.spec.checkpoint_sha256,
        "model": reid.spec.to_json(),
        "settings": json.dumps(settings),
        "height": reid.spec.height,
        "width": reid.spec.width,
        "flip_tta": reid.spec.flip_tta,
    }
    target = out if old is None else out.with_name(f".{out.name}.added.h5")
    _ui.info(f"Embedding {len(records):,} images with {reid.source} ({reid.runtime}, {reid.device}) into {out}")
    embedded = 0
    if overwrite or not features_complete(target, settings):
        how = ModelEmbedder(reid, batch_size=batch_size, workers=check_workers(workers), parsing=parsing)
        embedded = extract_to_file(
            how, {split: records}, folder, target, settings, attrs, reid.names, dtype, progress
        ).extracted
    if old is not None and is_main_process():  # the new rows after the old ones, below a folder holding both
        both = Path(os.path.commonpath([old.attrs["dataset_folder"], str(folder)]))
        merge_features(out, [out, target], {**attrs, "dataset_folder": str(both)}, dtype)
        target.unlink()
    barrier()  # under torchrun: rank 0 has merged
    total = len(FeatureFile(out).paths(split))
    return EmbedResult(out, split, total, embedded, sorted(map(str, bad)), reid.runtime, time.perf_counter() - start)


@dataclass
class SearchResult:
    out: Path
    queries: list[str]
    results: list[list[dict]]  # per query: {rank, gallery, distance, visible_in_both}
    gallery: Path  # the features file searched
    folder: Path  # the folder its images are in
    parts: tuple[str, ...]
    distance: str
    rerank: bool
    seconds: float
    files: list[Path] = field(default_factory=list)
    index: Path | None = None  # the index searched through (None: every gallery image scored)
    candidates: int = 0  # per query, from the index

    def to_json(self) -> dict:
        return {
            "out": str(self.out),
            "gallery": str(self.gallery),
            "index": str(self.index) if self.index else None,
            "candidates": self.candidates,
            "distance": self.distance,
            "rerank": self.rerank,
            "queries": [{"query": q, "results": r} for q, r in zip(self.queries, self.results)],
            "files": [str(f) for f in self.files],
            "seconds": round(self.seconds, 3),
        }


def search(
    queries: list[str | Path],
    *,
    model: str | Path,
    gallery: str | Path,
    top: int = 20,
    distance: str = DEFAULT_DISTANCE,
    visibility: bool = True,
    rerank: bool = False,
    k1: int = K1,
    k2: int = K2,
    lambda_value: float = LAMBDA,
    split: str = "gallery",
    index: str | Path | None = None,
    exact: bool = False,
    candidates: int | None = None,
    out: str | Path = "search",
    draw: int = 10,
    root: str | Path | None = None,
    device: str = "auto",
    progress: bool = True,
) -> SearchResult:
    """Rank a gallery for query images.

    Args:
        gallery: a features file (from `drop embed` or `drop extract-features` with this model), or a
            folder of images, embedded first into ``<folder>.<model>.h5`` beside it (kept, and grown
            incrementally by later searches, with its index when it has one).
        top: gallery images per query.
        distance, visibility, rerank, k1, k2, lambda_value: as `drop evaluate`.
        split: the split of the features file that is the gallery.
        index: the gallery's index (`drop index`); by default the features file's ``.index`` beside it
            is used when it exists. Searching through it scores only each query's ``candidates``
            (re-ranking re-ranks that short list) and never reads the whole gallery.
        candidates: per query, from the index (default :data:`drop_cli.index.CANDIDATES`).
        exact: score every gallery image, even where an index exists.
        out: folder for search.json, search.csv and search.png.
        draw: queries drawn in search.png (0: none).
        root: where the gallery images are, if they moved since the features file was made.
    """
    start = time.perf_counter()
    if top < 1:
        raise DropError(f"--top must be at least 1, got {top}.")
    candidates = CANDIDATES if candidates is None else candidates
    if candidates < top:
        raise DropError(f"--candidates must be at least --top ({top}), got {candidates}.")
    if exact and index is not None:
        raise DropError("--exact and --index contradict each other.", hint="Pass one of them.")
    reid = ReidModel.load(model, device=device)
    query_paths = collect_images(queries)
    bad = unreadable(query_paths)
    if bad:
        raise DropError(f"{len(bad)} query file(s) are not readable images, e.g. {', '.join(map(str, bad[:3]))}.")
    gallery = Path(gallery).expanduser()
    from_folder = gallery.is_dir()
    if from_folder:
        cache = gallery.with_name(f"{gallery.name}.{reid.spec.checkpoint_sha256[:12]}.h5")
        gallery = embed([gallery], model=model, out=cache, split=split, device=device, progress=progress).features
    file = FeatureFile(gallery)
    _same_model(file, reid)
    file.require((split,))
    if file.splits[split] == 0:
        raise DropError(f"{gallery} holds no {split} images.", hint="Embed some with `drop embed`.")
    index_file = None if exact else Path(index).expanduser() if index is not None else index_path(gallery)
    if index_file is not None and index is None and not index_file.exists():
        index_file = None
    if index_file is not None and from_folder:  # the cache grew: its index grows with it
        build_index(gallery, out=index_file, split=split, progress=progress)
    query_features = reid.embed(query_paths)
    params = Rerank(k1, k2, lambda_value)
    if index_file is None:
        ranked, paths, gallery_visibility = _exhaustive(
            reid, query_features, file, split, top, distance, visibility, params if rerank else None
        )
    else:
        ranked, paths, gallery_visibility = _through_index(
            index_file, query_features, file, split, top, candidates, distance, visibility, params if rerank else None
        )
    folder = file.images_folder(root)
    parts = reid.spec.parts
    g_visible = gallery_visibility[:, FIRST_PART:] > 0.5
    q_visible = query_features.visibility > 0.5
    results = [
        [
            {
                "rank": rank + 1,
                "gallery": str(folder / paths[g]),
                "distance": float(d),
                "visible_in_both": [p for p, seen in zip(parts, q_visible[q] & g_visible[g]) if seen],
            }
            for rank, (g, d) in enumerate(zip(rows.tolist(), dists.tolist()))
        ]
        for q, (rows, dists) in enumerate(ranked)
    ]
    out = Path(out).expanduser()
    names = [str(p) for p in query_paths]
    files = [
        write_text(
            out / "search.json",
            json.dumps({"queries": [{"query": q, "results": r} for q, r in zip(names, results)]}, indent=1),
        ),
        write_csv(
            out / "search.csv",
            [
                {"query": q, **{k: (";".join(v) if isinstance(v, list) else v) for k, v in row.items()}}
                for q, rows in zip(names, results)
                for row in rows
            ],
        ),
    ]
    if draw:
        shown = min(draw, len(names))
        files.append(
            draw_search(
                out / "search.png",
                names[:shown],
                [
                    [
                        (r["gallery"], r["distance"], q_visible[q] & g_visible[g])
                        for r, g in zip(results[q][:10], ranked[q][0][:10].tolist())
                    ]
                    for q in range(shown)
                ],
                parts=parts,
                query_visibility=query_features.visibility[:shown],
                title=f"Search: {distance} distance" + (", re-ranked" if rerank else "") + f", gallery {gallery.name}",
            )
        )
    return SearchResult(
        out,
        names,
        results,
        gallery,
        folder,
        parts,
        distance,
        rerank,
        time.perf_counter() - start,
        files,
        index_file,
        candidates if index_file is not None else 0,
    )


Ranked = list[tuple[np.ndarray, np.ndarray]]  # per query: gallery rows [top], their distances [top]


def _exhaustive(
    reid: ReidModel,
    query: Embeddings,
    file: FeatureFile,
    split: str,
    top: int,
    distance: str,
    visibility: bool,
    rerank: Rerank | None,
) -> tuple[Ranked, list[str], np.ndarray]:
    """Every gallery image scored: (ranked, the gallery paths, its visibility [Ng, M])."""
    gallery = file.read(split)
    distmat = reid.distance(query, gallery, distance=distance, visibility=visibility, rerank=rerank or False)
    order = np.argsort(distmat, axis=1, kind="stable")[:, :top]  # ties in gallery order, as evaluate ranks
    return [(row, distmat[q, row]) for q, row in enumerate(order)], gallery.paths, gallery.visibility


def _through_index(
    index_file: Path,
    query: Embeddings,
    file: FeatureFile,
    split: str,
    top: int,
    candidates: int,
    distance: str,
    visibility: bool,
    rerank: Rerank | None,
) -> tuple[Ranked, list[str], np.ndarray]:
    """Each query's candidates from the index, scored exactly: as :func:`_exhaustive`."""
    index = GalleryIndex.load(index_file)
    with SplitRows(file, split) as gallery:
        paths = file.paths(split)
        search = GallerySearch(index, gallery, paths)
        index.require_setting(
            make_setting(distance, visibility),
            "Search with its distance, pass --exact, or build an index for this one with "
            f"`drop index {file.path} --distance {distance} --out OTHER.index`.",
        )
        if index.rows < len(gallery):
            raise DropError(
                f"index {index_file} holds {index.rows:,} of the {len(gallery):,} {split} images of {file.path}.",
                hint=f"Add the {len(gallery) - index.rows:,} new ones with `drop index {file.path}`, or pass --exact.",
            )
        ranked = search(query.embeddings, query.row_visibility, top=top, candidates=candidates, rerank=rerank)
        return ranked, paths, gallery.visibility


index = build_index  # `drop index`: see drop_cli.index.build_index


def export(
    checkpoint: str | Path,
    *,
    out: str | Path | None = None,
    opset: int | None = None,
    half: bool = False,
    parsing: bool = False,
) -> ExportResult:
    """`drop export --format onnx`: see :func:`drop_cli.inference.export_onnx`."""
    kwargs = {} if opset is None else {"opset": opset}
    return export_onnx(checkpoint, out, half=half, parsing=parsing, **kwargs)
