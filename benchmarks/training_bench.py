"""Training throughput per arch: cxrq's loop vs torchvision ImageFolder + DataLoader.

    python -m benchmarks.training_bench [--images 1024] [--archs googlenet,cnn,mlp,resnet50]

Both train the same model on the same images (a class-stratified slice of
../shared/data/chest_xray/train) with the seed augmentation (64x64, ±5° rotation, ImageNet
normalisation), batch 32, Adam. The baseline decodes and transforms every image every epoch with
PIL/torchvision in a DataLoader (2 workers) and trains in NCHW; cxrq runs its own
`train_one_epoch`: decoded once (reduced JPEG decoding, threads), batches of cached tensors
augmented in one call, channels-last tensors. Reported: images/s over a first epoch (cxrq's includes
its decoding) and over a second epoch, float32 and with bfloat16 autocast (the tuned preset's
`amp`; only where the CPU has native bf16).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from benchmarks.common import SHARED, machine
from training.data.data_files import find_splits
from training.fitting.config import make_config
from training.fitting.loop import seed_everything, train_one_epoch
from training.fitting.training_data import DecodedSplit
from training.models.registry import create_model


def _slice(images: int) -> Path:
    """A folder of links: images/2 of each class (ImageFolder needs a folder)."""
    root = Path(tempfile.mkdtemp(prefix="cxrq-train-bench-"))
    items = find_splits(SHARED / "chest_xray")["train"]
    for label, name in ((0, "NORMAL"), (1, "PNEUMONIA")):
        (root / name).mkdir()
        for item in [i for i in items if i.label == label][: images // 2]:
            (root / name / Path(item.path).name).symlink_to(item.path)
    return root


def _step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    loss = nn.functional.binary_cross_entropy_with_logits(model(x), y.float())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def baseline_epochs(arch: str, root: Path, epochs: int = 2) -> list[float]:
    tf = transforms.Compose(
        [
            transforms.Resize((64, 64)),
            transforms.RandomRotation(5),
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    loader = DataLoader(
        datasets.ImageFolder(root, tf),
        batch_size=32,
        shuffle=True,
        num_workers=2,
        persistent_workers=True,
    )
    torch.manual_seed(0)
    model = create_model(arch, 64).train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for x, y in loader:
            _step(model, opt, x, y)
        times.append(time.perf_counter() - start)
    return times


def cxrq_epochs(arch: str, root: Path, epochs: int = 2, precision: str = "fp32") -> list[float]:
    """cxrq's own loop (training.fitting.loop), seed augmentation, no balancing copies."""
    config = make_config(arch, preset="seed", batch_size=32, balance="none", precision=precision)
    gen = seed_everything(0)
    model = create_model(arch, 64).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    items = find_splits(root)["train"]
    times = []
    start = time.perf_counter()
    data = DecodedSplit.decode(items, 64)  # once; the first epoch pays for it
    plan = (torch.arange(data.labels.numel()), torch.zeros_like(data.labels))
    for _ in range(epochs):
        train_one_epoch(model, data, plan, opt, config, gen, lambda *_: None)
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--archs", default="googlenet,cnn,mlp,resnet50")
    args = parser.parse_args()
    root = _slice(args.images)
    n = len(list(root.rglob("*.jpeg")))
    print(f"machine: {machine()}\nimages per epoch: {n}\n")
    print(
        "| arch | baseline epoch 1 | cxrq epoch 1 | baseline epoch 2 | cxrq epoch 2 | "
        "cxrq bf16 epoch 2 | speed-up fp32 / bf16 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for arch in args.archs.split(","):
        base, fast = baseline_epochs(arch, root), cxrq_epochs(arch, root)
        amp = cxrq_epochs(arch, root, precision="auto")
        print(
            f"| {arch} | {n / base[0]:.0f} | {n / fast[0]:.0f} | {n / base[1]:.0f} | "
            f"{n / fast[1]:.0f} | {n / amp[1]:.0f} | {base[1] / fast[1]:.2f}x / "
            f"{base[1] / amp[1]:.2f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
