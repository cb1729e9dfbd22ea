"""Which heat map explains the shipped small nets' answers: Grad-CAM at each stage, or occlusion.

    python benchmarks/explanations.py [--n 50]

For the first ``--n`` test images of each shipped checkpoint's bundled split, as the Predict page
computes them (``Predictor.explanation``): the share of the map's mass on the object's pixels
(ink: pixel > 0; a random map scores the object's share of the image), the probability left to
the class when the 40 pixels the map ranks hottest are set to the background (lower: the map
found what the answer needs), and milliseconds per map. The figures behind occlusion being the
default at 28 px (resnet_core/predict.py, SMALL_INPUT) and benchmarks/README.md's table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import report  # benchmarks/report.py: run as a script, its folder is on sys.path
import torch

from resnet_core import catalog, data, predict


def judge(predictor: predict.Predictor, images: torch.Tensor, method: str, layer: str | None) -> dict:
    shares, left, times = [], [], []
    for image in images:
        start = time.perf_counter()
        why = predictor.explanation(image, None, method, layer)
        times.append(time.perf_counter() - start)
        ink = image.amax(0) > 0
        heat = why.heat.double()
        shares.append(float(heat[ink].sum() / heat.sum().clamp(min=1e-12)))
        hottest = heat.flatten().argsort(descending=True)[:40]
        blank = image.clone().flatten(1)
        blank[:, hottest] = 0
        left.append(float(predictor.probabilities(blank.view_as(image)[None])[0, why.target]))
    return {
        "on_object": round(statistics.mean(shares), 3),
        "p_left_after_40": round(statistics.mean(left), 3),
        "ms": round(1000 * statistics.median(times), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rows = []
    for row in catalog.shipped():
        predictor = predict.Predictor.from_checkpoint(row["checkpoint"])
        images = data.load_dataset(row["dataset"], "test").images[: args.n]
        share = float((images.amax(1) > 0).float().mean())
        ways = [("occlusion", None)] + [("gradcam", layer) for layer in predictor.cam_layers()]
        for method, layer in ways:
            rows.append({"checkpoint": row["run"], "method": method, "layer": layer, "object_share": round(share, 3)})
            rows[-1].update(judge(predictor, images, method, layer))
    report.emit({"machine": report.machine(load), "images": args.n, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
