"""Your classes (resnet_core/teach.py) on the real ImageNet ResNet-50, timed as a student meets it:

    .venv/bin/python benchmarks/teach_speed.py            # 5 classes x 20 photos, about 2 minutes on 2 cores
    .venv/bin/python benchmarks/teach_speed.py --json

1. adding a photo: camera frames (640x480 JPEG, as Chromium's camera sends them) made from the
   ants-and-bees photos (../shared/data/hymenoptera.zip) or, without it, foolbox's ImageNet photos;
   seconds from the shot's bytes to its features kept (goal: p95 <= 0.3 s);
2. training the head on 5 classes x 20 photos, cross-validation included (goal: <= 3 s);
3. a live shot: bytes to the per-class bars (``teach.ask``: decode, crop, features, head, nearest
   photos; goal p50 <= 0.3 s), and Grad-CAM after it.

It needs the converted weights: a lab home holding them (``--home``, default the test cache's,
~/.cache/resnet-lab-tests/lab, which `python -m resnet_core weights get resnet50` fills as well).
The classes are written to a temporary owner folder in a copy-free temporary lab (the weights
linked), removed at the end.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
HYMENOPTERA = ROOT.parent / "shared" / "data" / "hymenoptera.zip"
CACHE = Path(os.environ.get("RESNET_LAB_TEST_CACHE", Path.home() / ".cache" / "resnet-lab-tests"))


def frames(n: int) -> tuple[list[bytes], str]:
    """``n`` camera frames: real photos cut to 4:3 and encoded at 640x480, as a webcam's JPEG."""
    from PIL import Image

    sources = []
    if HYMENOPTERA.is_file():
        with zipfile.ZipFile(HYMENOPTERA) as zf:
            names = sorted(m for m in zf.namelist() if m.lower().endswith(".jpg"))
            sources = [zf.read(m) for m in names[:n]]
        where = "hymenoptera.zip"
    if len(sources) < n:
        photos = sorted((CACHE / "foolbox-3.3.4").glob("imagenet_*.jpg"))
        sources = [p.read_bytes() for p in photos] * (n // max(len(photos), 1) + 1)
        where = "foolbox 3.3.4's ImageNet photos, repeated"
    out = []
    for raw in sources[:n]:
        with Image.open(io.BytesIO(raw)) as im:
            im = im.convert("RGB")
            w, h = im.size
            cw, ch = min(w, h * 4 // 3), min(h, w * 3 // 4)
            left, top = (w - cw) // 2, (h - ch) // 2
            buf = io.BytesIO()
            im.crop((left, top, left + cw, top + ch)).resize((640, 480)).save(buf, "JPEG", quality=85)
            out.append(buf.getvalue())
    return out, where


def pct(values: list[float], q: float) -> float:
    return round(sorted(values)[min(len(values) - 1, int(q * len(values)))], 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=CACHE / "lab", help="a lab home holding the weights")
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--shots", type=int, default=20, help="live shots timed")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    lab = Path(tempfile.mkdtemp(prefix="teach-bench-"))
    (lab / "weights").mkdir()
    for f in (args.home / "weights").glob("*"):
        (lab / "weights" / f.name).symlink_to(f.resolve())
    os.environ["RESNET_LAB_HOME"] = str(lab)
    import torch
    from report import machine

    from resnet_core import precision, teach

    try:
        net = teach.backbone()
    except teach.TeachError as err:
        sys.exit(f"{err} (looked in {args.home / 'weights'})")
    n = args.classes * args.per_class
    shots, source = frames(n + args.shots)
    owner = "be" * 8
    warm = teach.features_of(net, torch.zeros(1, 3, 224, 224, dtype=torch.uint8))  # kernels chosen once
    del warm
    add_s = []
    for c in range(args.classes):
        teach.add_class(owner, f"class {c + 1}")
        for i in range(args.per_class):
            t0 = time.perf_counter()
            teach.add_example(owner, f"class {c + 1}", shots[c * args.per_class + i], "shot.jpg", net)
            add_s.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    result = teach.train(owner, net)
    train_s = time.perf_counter() - t0
    ask_s, cam_s = [], []
    for raw in shots[n:]:
        t0 = time.perf_counter()
        answer = teach.ask(owner, raw, "shot.jpg", net)
        ask_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        teach.explain(owner, answer["prepared"].tensor, answer["top"], net)
        cam_s.append(time.perf_counter() - t0)
    teach.delete_all(owner)
    report = {
        "benchmark": "teach_speed",
        "photos": source,
        "classes": args.classes,
        "per_class": args.per_class,
        "add_p50_s": pct(add_s, 0.5),
        "add_p95_s": pct(add_s, 0.95),
        "train_s": round(train_s, 3),
        "train_folds": result["folds"],
        "ask_p50_s": pct(ask_s, 0.5),
        "ask_p95_s": pct(ask_s, 0.95),
        "gradcam_p50_s": pct(cam_s, 0.5),
        "precision": precision.resolve("cpu", net.amp).label,
        "machine": machine(load_before),
        "goals": {"add_p95_s": 0.3, "train_s": 3.0, "ask_p50_s": 0.3},
    }
    if args.json:
        print(json.dumps(report))
        return
    print(json.dumps(report, indent=1))
    print(
        f"add a photo p50 {report['add_p50_s']} s, p95 {report['add_p95_s']} s (goal 0.3); train "
        f"{args.classes}x{args.per_class} {report['train_s']} s (goal 3); live shot to bars p50 "
        f"{report['ask_p50_s']} s (goal 0.3), Grad-CAM {report['gradcam_p50_s']} s; {report['machine']}"
    )


if __name__ == "__main__":
    main()
