"""Several models on the same image files: each file decoded once per input (size, contrast
mapping, crop), every model's P(PNEUMONIA), P(VIRAL | PNEUMONIA), review scores and, when asked,
heatmaps, by file position. A file that cannot be decoded, or that a model fails on, is an
error by position; the other files are answered.

    scored = score_files_multi([bundle_a, bundle_b], paths, explain=True)
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from training.data.dicom import DicomHeader, first_line
from training.data.preprocess import DecodedBatch, decode_many, mean_grey, stream_decode
from training.models.checkpoint import ModelBundle
from training.review.features import feature_tap
from training.scoring.inference import predict_outputs, probabilities


@dataclass
class FileScores:
    """Several models' answers on the same files. probs and viral are (M, N), NaN where a file
    could not be read (viral also where a model has no kind head); review is (M, N, 2), the ood
    and anomaly scores (NaN also where a model has no review statistics); maps[m] holds model
    m's heatmap (h, w) by file position, when they were asked for; headers the DICOM header of
    each DICOM file that decoded, read with its pixels; brightness (M, N) the mean grey level
    (0-1) of each model's input, before normalisation: drift monitoring watches it, since a
    new detector or protocol moves the pixels long before it moves the model's answers."""

    probs: torch.Tensor
    viral: torch.Tensor
    review: torch.Tensor
    brightness: torch.Tensor | None = None
    errors: dict[int, str] = field(default_factory=dict)  # position -> reason
    maps: list[dict[int, torch.Tensor]] = field(default_factory=list)
    headers: dict[int, DicomHeader] = field(default_factory=dict)  # position -> header


def _outputs(
    bundle: ModelBundle, images: torch.Tensor, explain: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """(P(PNEUMONIA), P(VIRAL | PNEUMONIA) or None, review scores or None, maps or None) of
    one model on a batch."""
    tap = feature_tap(bundle.model) if bundle.review is not None else nullcontext([])
    with tap as feats:
        if explain:
            from training.explain.gradcam import explain_batch  # only jobs that ask for maps pay it

            out, maps = explain_batch(bundle.model, bundle.arch, images, bundle.normalizer)
            prob, viral = probabilities(out)
        else:
            (prob, viral), maps = predict_outputs(bundle.model, images, bundle.normalizer), None
    review = None
    if bundle.review is not None and len(images):
        features = torch.cat(feats)
        if len(features) != len(images):
            raise RuntimeError(f"head ran on {len(features)} images for {len(images)} inputs")
        review = bundle.review.input_scores(features, images)
    return prob, viral, review, maps


# Images per GPU batch: small enough that a 256-image unit is four batches, so decoding the
# next overlaps scoring this one; big enough to keep the card busy at 64-224 px.
GPU_BATCH = 64

MODEL_FAILED = "cannot score image: "  # error prefix of an image the model failed on alone

Outputs = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]


def _guarded_outputs(
    bundle: ModelBundle,
    images: torch.Tensor,
    explain: bool,
    positions: list[int],
    errors: dict[int, str],
) -> tuple[list[int], Outputs]:
    """(the positions answered, _outputs on them). When the batch fails, each image is scored
    alone: one that fails on its own gets an error (by position) and the rest are answered;
    when every image fails alone too, the batch's exception is raised."""
    try:
        return positions, _outputs(bundle, images, explain)
    except Exception as exc:
        failure = exc
    kept, parts, failed = [], [], {}
    for i, position in enumerate(positions):
        try:
            parts.append(_outputs(bundle, images[i : i + 1], explain))
        except Exception as exc:
            failed[position] = f"{MODEL_FAILED}{type(exc).__name__}: {first_line(exc)}"
            continue
        kept.append(position)
    if positions and not kept:
        # The model fails on every image: the chunk fails (retried, then recorded as lost).
        raise failure
    errors.update(failed)
    return kept, _concat(parts, explain)


def _concat(parts: list[Outputs], explain: bool) -> Outputs:
    """Per-image outputs joined as one batch's (empty when no image was answered)."""
    if not parts:
        return torch.empty(0), None, None, (torch.empty(0, 0, 0) if explain else None)
    fields = [None if f[0] is None else torch.cat(f) for f in zip(*parts, strict=True)]
    return fields[0], fields[1], fields[2], fields[3]


def _decoded(
    paths: Sequence[str | os.PathLike],
    size: int,
    equalize: str,
    crop: float,
    batch_size: int,
    on_gpu: bool,
) -> Iterator[tuple[int, DecodedBatch]]:
    """(start, decoded batch) over the files. With a model on a GPU, decoding streams on every
    core this process has (the GPU leaves torch's CPU threads idle) into pinned batches of
    GPU_BATCH while the card scores the one before; on a CPU the cores are the model's, so
    each batch is decoded and then scored."""
    if not on_gpu:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            yield start, decode_many(chunk, size, equalize_mode=equalize, crop=crop)
        return
    threads = max(torch.get_num_threads(), 1)
    yield from stream_decode(paths, size, GPU_BATCH, threads, equalize, crop, pin=True)


DecodeMemo = dict[tuple, list[tuple[int, DecodedBatch]]]


def _remembered(
    memo: DecodeMemo | None, key: tuple, batches: Iterator[tuple[int, DecodedBatch]]
) -> Iterator[tuple[int, DecodedBatch]]:
    """The batches, kept in `memo` under `key` as they come, or replayed from it: a second
    scorer of the same chunk (a shadow) then decodes nothing again."""
    if memo is None:
        yield from batches
        return
    if key in memo:
        yield from memo[key]
        return
    kept: list[tuple[int, DecodedBatch]] = []
    for item in batches:
        kept.append(item)
        yield item
    memo[key] = kept  # only a complete pass is replayed


def score_files_multi(
    bundles: Sequence[ModelBundle],
    paths: Sequence[str | os.PathLike],
    batch_size: int = 256,
    explain: bool = False,
    memo: DecodeMemo | None = None,
) -> FileScores:
    """P(PNEUMONIA), P(VIRAL | PNEUMONIA), review scores and (with `explain`) heatmaps of
    several models on the same files. Each file is decoded once per input size, contrast
    mapping and crop; `batch_size` is the CPU's decode batch (a GPU's is GPU_BATCH). A `memo`
    shared between calls on the same paths keeps the decoded batches for the next call."""
    shape = (len(bundles), len(paths))
    nan = float("nan")
    result = FileScores(
        torch.full(shape, nan, dtype=torch.float64),
        torch.full(shape, nan, dtype=torch.float64),
        torch.full((*shape, 2), nan, dtype=torch.float64),
        torch.full(shape, nan, dtype=torch.float64),
    )
    result.maps = [{} for _ in bundles] if explain else []
    by_input: dict[tuple[int, str, float], list[int]] = {}
    for m, bundle in enumerate(bundles):
        by_input.setdefault((bundle.img_size, bundle.equalize, bundle.crop), []).append(m)
    on_gpu = any(b.model_device.type == "cuda" for b in bundles)
    for (size, equalize, crop), members in by_input.items():
        decoding = _decoded(paths, size, equalize, crop, batch_size, on_gpu)
        key = (size, equalize, crop, batch_size, on_gpu)
        for start, decoded in _remembered(memo, key, decoding):
            result.errors.update({start + i: msg for i, msg in decoded.errors.items()})
            result.headers.update({start + i: h for i, h in decoded.headers.items()})
            positions = [start + i for i in decoded.ok_index]
            if positions:
                means = mean_grey(decoded.tensor.cpu())
                for m in members:
                    result.brightness[m, positions] = means
            for m in members:
                kept, (prob, viral, review, maps) = _guarded_outputs(
                    bundles[m], decoded.tensor, explain, positions, result.errors
                )
                columns = torch.tensor(kept, dtype=torch.long)
                result.probs[m, columns] = prob.double()
                if viral is not None:
                    result.viral[m, columns] = viral.double()
                if review is not None:
                    result.review[m, columns] = review.double()
                if maps is not None:
                    result.maps[m].update(zip(kept, maps, strict=True))
    return result
