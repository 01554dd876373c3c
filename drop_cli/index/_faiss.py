"""faiss, the optional index library: imported on first use, with one clear line where it is missing."""

from __future__ import annotations

from types import ModuleType

from ..errors import DropError

# Dimensions per product-quantizer sub-vector of the default index, and its bits per sub-vector code.
SUB_VECTOR_DIMS = 6
CODE_BITS = 4
# Below this many images the default index holds the vectors whole ("Flat": exact inner products; a
# quantizer's 16 centroids per sub-vector want a few hundred training images at least).
FLAT_BELOW = 2048


def faiss_module() -> ModuleType:
    """The faiss module, or a DropError naming the extra that installs it."""
    try:
        import faiss
    except ImportError:
        raise DropError(
            "faiss is not installed: `drop index` and indexed search need it.",
            hint="Install the extra: pip install 'drop-reid[index]' (faiss-cpu; faiss-gpu works where CUDA is).",
        ) from None
    return faiss


def default_factory(dim: int, images: int) -> str:
    """The default index of ``images`` vectors of ``dim`` dimensions: below :data:`FLAT_BELOW` images the
    vectors themselves ("Flat"), else a flat 4-bit product quantizer scanned with SIMD ("fast scan"),
    about :data:`SUB_VECTOR_DIMS` dimensions per sub-vector.

    [ours] measured on clustered embeddings (benchmarks/bench_index.py): an inverted file (IVF) loses
    most neighbours at any cheap ``nprobe`` because images of one identity share only a small part of a
    4,608-d vector and scatter over the lists; PCA to a few hundred dimensions keeps too little of it.
    Scanning every compact code keeps recall and costs about 25 ms per query at a million images.
    """
    if images < FLAT_BELOW:
        return "Flat"
    target = max(2, dim // SUB_VECTOR_DIMS)
    divisors = [m for m in range(2, dim + 1, 2) if dim % m == 0]  # fast scan wants an even number
    if not divisors:
        return "Flat"
    sub_vectors = min(divisors, key=lambda m: (abs(m - target), m))
    return f"PQ{sub_vectors}x{CODE_BITS}fs"
