"""What ImageNet colour augmentation costs the streamed loader, side by side in one process.

    python benchmarks/folder_color.py [--images 256] [--size 375 500] [--repeats 5]

Writes a generated ImageFolder tree (JPEGs of about ``--size`` pixels, ImageNet's typical
375x500) to a temporary folder and times one epoch of ``optnb.data.FolderLoader`` at 224 px in
this process (``num_workers=0``: the per-image work a worker does) with each colour recipe,
interleaved, ``--repeats`` times. Prints the median seconds per image and the ratio to ``none``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from optnb import data
from optnb.data.color import COLOR_AUGMENTATIONS
from optnb.data.fake import write_imagenet_tree


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=256, help="training images (8 classes)")
    p.add_argument("--size", type=int, nargs=2, default=(375, 500), metavar=("H", "W"))
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        write_imagenet_tree(tmp, classes=8, train_per_class=max(1, args.images // 8), size=tuple(args.size))
        times: dict[str, list[float]] = {name: [] for name in COLOR_AUGMENTATIONS}
        for _ in range(args.repeats):
            for name in COLOR_AUGMENTATIONS:
                loader = data.FolderLoader(tmp, True, 32, "cpu", data.MEAN["imagenet"], data.STD["imagenet"],
                                           resolution=224, color=name)
                start = time.perf_counter()
                n = sum(len(y) for _, y in loader)
                times[name].append((time.perf_counter() - start) / n)
    base = statistics.median(times["none"])
    print(f"FolderLoader, 224 px, JPEGs about {args.size[0]}x{args.size[1]}, {n} images, 1 thread, "
          f"median of {args.repeats}")
    print("| colour | ms per image | ratio to none |\n|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {1000 * median:.2f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
