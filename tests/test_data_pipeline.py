"""Joint image + label-map augmentation, the PK sampler and the image dataset."""

from __future__ import annotations

import pytest
import torch

from drop_cli.data import load_dataset
from drop_cli.data.images import ReidImages
from drop_cli.data.samplers import PKBatchSampler, SeededBatches
from drop_cli.data.transforms import BOX_FILL, EvalTransform, TrainTransform
from drop_cli.errors import DropError, LabelsError
from drop_cli.labels import LabelFile
from drop_cli.parts import PRESETS, mirror_permutation

EIGHT = PRESETS["eight"]


def _figure():
    """A 3-band image whose colours encode the label map: red = label 2 (left arm), blue = 3 (right arm)."""
    image = torch.zeros(3, 64, 32, dtype=torch.uint8)
    labels = torch.zeros(32, 16, dtype=torch.uint8)
    image[0, :, :16] = 255
    labels[:, :8] = 2
    image[2, :, 16:] = 255
    labels[:, 8:] = 3
    return image, labels


def test_train_transform_keeps_image_and_labels_aligned():
    image, labels = _figure()
    transform = TrainTransform(64, 32, parts=EIGHT, pad=4, flip=True, flip_swap_sides=True, random_erasing=0.0)
    for seed in range(12):
        torch.manual_seed(seed)
        out, mask = transform(image, labels)
        assert out.shape == (3, 64, 32) and out.dtype == torch.float32 and mask.shape == (64, 32)
        red, blue = out[0] > 1.0, out[2] > 1.0  # pure red/blue normalise to about 2.2 / 2.6
        flipped = bool(blue[:, :8].any())  # the blue half moved to the image's left
        assert torch.equal(red, mask == (3 if flipped else 2)) and torch.equal(blue, mask == (2 if flipped else 3))
        assert torch.equal(~(red | blue), mask == 0), "padding is background"


def test_flip_swaps_left_and_right_labels():
    """With flip_swap_sides [ours]: mirrored, the person's left arm is drawn where a right arm would be,
    so labels 2 and 3 swap: label 2 stays on the image's left half while the colours change sides."""
    image, labels = _figure()
    transform = TrainTransform(64, 32, parts=EIGHT, pad=0, flip=True, flip_swap_sides=True, random_erasing=0.0)
    red_on_left = set()
    for seed in range(10):
        torch.manual_seed(seed)
        out, mask = transform(image, labels)
        assert (mask[:, :16] == 2).all() and (mask[:, 16:] == 3).all()
        red_on_left.add(bool(out[0, 32, 0] > 1.0))
    assert red_on_left == {True, False}, "both flipped and unflipped samples occur"


def test_bpbreid_flip_mirrors_the_labels_unchanged():
    """[base] BPBreID flips its masks without swapping channels: label 2 follows the red half."""
    image, labels = _figure()
    transform = TrainTransform(64, 32, parts=EIGHT, pad=0, flip=True, random_erasing=0.0)
    flips = set()
    for seed in range(10):
        torch.manual_seed(seed)
        out, mask = transform(image, labels)
        red = out[0] > 1.0
        assert torch.equal(red, mask == 2) and torch.equal(out[2] > 1.0, mask == 3)
        flips.add(bool(red[:, 16:].all()))
    assert flips == {True, False}


def test_mirror_permutation_comes_from_the_part_names():
    assert mirror_permutation(EIGHT).tolist() == [0, 1, 3, 2, 4, 6, 5, 8, 7]
    assert mirror_permutation(PRESETS["five"]).tolist() == list(range(6))
    assert mirror_permutation(PRESETS["five_v"]).tolist() == list(range(6))
    assert mirror_permutation(("left_hand", "torso", "right_hand", "left_ear")).tolist() == [0, 3, 2, 1, 4]


def test_random_erasing_turns_erased_labels_into_background():
    """[ours] Zhong et al.'s erasing: filled with 0, the ImageNet mean once normalised."""
    image = torch.full((3, 64, 32), 200, dtype=torch.uint8)
    labels = torch.full((32, 16), 4, dtype=torch.uint8)
    transform = TrainTransform(64, 32, parts=EIGHT, pad=0, random_erasing=1.0, erasing="zhong")
    torch.manual_seed(0)
    out, mask = transform(image, labels)
    erased = (out == 0).all(dim=0)
    assert erased.any() and torch.equal(erased, mask == 0)


def test_bpbreid_box_erasing():
    """[base] One box of 15-65% of the height and of the width, filled with 0.485/0.456/0.406 after
    normalisation (albumentations' CoarseDropout in BPBreID's transforms), labels background there."""
    image = torch.full((3, 100, 40), 200, dtype=torch.uint8)
    labels = torch.full((50, 20), 4, dtype=torch.uint8)
    transform = TrainTransform(100, 40, parts=EIGHT, pad=0, random_erasing=1.0)
    sizes = set()
    for seed in range(40):
        torch.manual_seed(seed)
        out, mask = transform(image, labels)
        box = torch.stack([out[c] == BOX_FILL[c] for c in range(3)]).all(dim=0)
        rows, cols = box.any(dim=1).nonzero()[:, 0], box.any(dim=0).nonzero()[:, 0]
        h, w = len(rows), len(cols)
        assert 15 <= h <= 65 and 6 <= w <= 26 and box.sum() == h * w, "one full box"
        assert rows[-1] - rows[0] + 1 == h and cols[-1] - cols[0] + 1 == w
        assert torch.equal(box, mask == 0)
        sizes.add((h, w))
    assert len(sizes) > 20, "sizes vary"
    with pytest.raises(ValueError, match="zhong"):
        TrainTransform(100, 40, parts=EIGHT, erasing="square")


def test_colour_jitter_is_applied_with_its_probability():
    image = torch.full((3, 64, 32), 120, dtype=torch.uint8)
    labels = torch.zeros(32, 16, dtype=torch.uint8)
    plain = TrainTransform(64, 32, parts=EIGHT, pad=0, random_erasing=0.0)(image, labels)[0]
    transform = TrainTransform(
        64,
        32,
        parts=EIGHT,
        pad=0,
        random_erasing=0.0,
        color_jitter=0.5,
        jitter_brightness=0.2,
        jitter_contrast=0.15,
        jitter_saturation=0.0,
    )
    changed = []
    for seed in range(40):
        torch.manual_seed(seed)
        changed.append(not torch.equal(transform(image, labels)[0], plain))
    assert 8 < sum(changed) < 32, "about half of the images are jittered"


def test_antialias_only_changes_a_downscaled_image():
    image = torch.randint(0, 256, (3, 256, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    sharp, smooth = EvalTransform(64, 32)(image)[0], EvalTransform(64, 32, antialias=True)(image)[0]
    assert sharp.std() > smooth.std() * 1.2, "without antialiasing the noise survives the downscaling"


def test_test_transform():
    image, labels = _figure()
    out, mask = EvalTransform(128, 64)(image, labels)
    assert out.shape == (3, 128, 64) and mask.shape == (128, 64) and set(mask.unique().tolist()) == {2, 3}
    assert EvalTransform(128, 64)(image)[1] is None


def test_pk_sampler():
    pids = [0] * 9 + [1] * 4 + [2] * 2 + [3] * 5 + [4] * 1
    sampler = PKBatchSampler(pids, batch_size=4, num_instances=2, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) > 0
    for batch in batches:
        batch_pids = [pids[i] for i in batch]
        assert len(batch) == 4 and len(set(batch_pids)) == 2
        assert all(batch_pids.count(p) == 2 for p in set(batch_pids))
    assert list(sampler) == batches, "same epoch, same batches"
    sampler.set_epoch(1)
    assert list(sampler) != batches
    sampler.set_epoch(0)
    ranks = [list(PKBatchSampler(pids, 4, 2, seed=1, rank=r, world_size=2)) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks)] == batches, "the ranks split every global batch in two"
    with pytest.raises(DropError, match="split evenly over the 3 processes"):
        PKBatchSampler(pids, 4, 2, world_size=3)


def test_seeded_batches_give_every_draw_its_own_seed():
    pids = [0] * 9 + [1] * 4 + [2] * 2 + [3] * 5 + [4] * 1
    seeded = SeededBatches(PKBatchSampler(pids, batch_size=4, num_instances=2, seed=1))
    batches = list(seeded)
    assert [[index for index, _ in batch] for batch in batches] == list(PKBatchSampler(pids, 4, 2, seed=1))
    seeds = [seed for batch in batches for _, seed in batch]
    assert len(set(seeds)) == len(seeds), "a seed per draw, also for an image drawn twice"
    assert list(seeded) == batches and len(seeded) == len(batches)
    seeded.set_epoch(1)
    assert not {s for batch in seeded for _, s in batch} & set(seeds), "new seeds every epoch"
    seeded.set_epoch(0)
    ranks = [list(SeededBatches(PKBatchSampler(pids, 4, 2, seed=1, rank=r, world_size=2))) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks)] == batches, "each rank draws its share with the one-process seeds"


def test_pk_sampler_refuses_bad_sizes():
    with pytest.raises(DropError, match="multiple of data.num_instances"):
        PKBatchSampler([0, 1], batch_size=5, num_instances=2)
    with pytest.raises(DropError, match="fewer than the 4 a batch needs"):
        PKBatchSampler([0, 1, 2], batch_size=16, num_instances=4)


def test_reid_images_reads_images_and_labels(synthetic_root):
    ds = load_dataset("synthetic", synthetic_root)
    truth = LabelFile(synthetic_root / "synthetic" / "ground_truth.h5")
    images = ReidImages(ds.query, ds.folder, EvalTransform(256, 128), truth)
    item = images[0]
    assert item["image"].shape == (3, 256, 128) and item["pid"] == ds.query[0].pid
    assert torch.equal(item["labels"], torch.from_numpy(truth[ds.query[0].path]))
    loader = torch.utils.data.DataLoader(images, batch_size=4, num_workers=2)
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 256, 128) and batch["labels"].dtype == torch.uint8


def test_reid_images_augment_a_seeded_draw_the_same_in_any_process_state(synthetic_root):
    ds = load_dataset("synthetic", synthetic_root)
    truth = LabelFile(synthetic_root / "synthetic" / "ground_truth.h5")
    images = ReidImages(ds.train, ds.folder, TrainTransform(64, 32, parts=EIGHT, pad=4, color_jitter=1.0), truth)
    torch.manual_seed(0)
    first = images[(3, 1234)]
    state = torch.get_rng_state()
    torch.manual_seed(99)  # whatever the global generator holds
    again = images[(3, 1234)]
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["labels"], again["labels"])
    torch.set_rng_state(state)
    images[(3, 1234)]
    assert torch.equal(torch.get_rng_state(), state), "the process's random state is left as it was"
    others = [images[(3, seed)]["image"] for seed in range(1, 6)]
    assert not any(torch.equal(first["image"], other) for other in others), "another seed, another augmentation"
    assert first["index"] == 3 and first["pid"] == ds.train[3].pid


def test_reid_images_names_missing_labels(synthetic_root, tmp_path):
    from drop_cli import prepare_data

    ds = load_dataset("synthetic", synthetic_root)
    out = tmp_path / "l.h5"
    prepare_data("synthetic", root=synthetic_root, labeler="stripes", workers=0, out=out, progress=False)
    labels = LabelFile(out)
    bogus = [type(ds.train[0])("bounding_box_train/9999_c1_f0000000.jpg", 0, 0)]
    with pytest.raises(LabelsError, match=r"1 image\(s\) have no labels .*`drop prepare-data synthetic"):
        ReidImages(ds.train[:2] + bogus, ds.folder, EvalTransform(64, 32), labels)


def test_transforms_normalise_with_the_given_statistics():
    """The backbone's mean/std (timm's pretrained config) normalise the images, ImageNet's by default."""
    image = torch.full((3, 8, 4), 255, dtype=torch.uint8)
    half = EvalTransform(8, 4, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))(image)[0]
    assert torch.allclose(half, torch.full_like(half, 2.0))
    imagenet = EvalTransform(8, 4)(image)[0]
    assert torch.allclose(imagenet[0], torch.full((8, 4), (1 - 0.485) / 0.229))
    train = TrainTransform(8, 4, parts=EIGHT, pad=0, random_erasing=0.0, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert torch.allclose(train(image, torch.zeros(8, 4, dtype=torch.uint8))[0], half)
