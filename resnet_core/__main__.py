"""Command line: ``python -m resnet_core COMMAND``: train, evaluate, predict, runs, datasets, models, weights,
export, transfer-compare.

The dashboard calls the same functions; every flag of ``train`` comes from a
:class:`TrainConfig` field, so the CLI cannot drift from the config.
"""

from __future__ import annotations

import sys

if sys.argv[1:2] == ["train"]:  # first, before torch loads: a stop during start-up is a stop, not a crash
    from resnet_core import stopping

    stopping.install()

import argparse
import dataclasses
import json
import os
import traceback
import types
import typing
from pathlib import Path

from resnet_core.config import AUGMENTATIONS, DEVICES, OPTIMIZERS, SCHEDULES, TRAINABLE, ConfigError, TrainConfig

CHOICES = {
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "device": DEVICES,
    "augment": AUGMENTATIONS,
    "trainable": TRAINABLE,
}
HIDDEN = {"run_dir", "extra"}


def _field_type(f: dataclasses.Field):
    hint = typing.get_type_hints(TrainConfig)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if isinstance(hint, types.UnionType) or typing.get_origin(hint) else hint


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; defaults stay None so presets and config.json show through."""
    for f in dataclasses.fields(TrainConfig):
        if f.name in HIDDEN:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = _field_type(f)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            parser.add_argument(
                flag, type=kind, default=None, choices=CHOICES.get(f.name), help=f"default: preset or {f.default!r}"
            )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    from resnet_core import data

    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if f.name not in HIDDEN and getattr(args, f.name) is not None
    }
    dataset = given.get("dataset", TrainConfig.dataset)
    return TrainConfig(**{**data.get_spec(dataset).preset, **given}).validate()


def progress_printer():
    """A tqdm bar per epoch on a terminal, plus one line per finished epoch."""
    from tqdm import tqdm

    state = {"bar": None}

    def echo(event: dict) -> None:
        kind = event["type"]
        if kind == "start":
            print(
                f"training on {event['device']} in {event.get('precision', 'fp32')} "
                f"({event['world_size']} process(es)): "
                f"{event['train_images']} train / {event['test_images']} test images at {event['image_size']} px",
                flush=True,
            )
            print(event["transfer"], flush=True)  # what loaded, what starts fresh, what trains
        elif kind == "features" and event["state"] == "computing":
            print(f"linear probe: the frozen backbone's features of {event['images']} images...", flush=True)
        elif kind == "features":
            print(
                f"features ready in {event['seconds']:.1f} s ({event['cached']} of {event['images']} from the cache); "
                "the head trains on them",
                flush=True,
            )
        elif kind == "batch":
            if state["bar"] is None:
                state["bar"] = tqdm(
                    total=event["steps"],
                    initial=event["step"] - 1,
                    desc=f"epoch {event['epoch'] + 1}",
                    unit="batch",
                    leave=False,
                    disable=not sys.stderr.isatty(),  # a launched run's train.log gets epoch lines only
                )
            state["bar"].update(event["step"] - state["bar"].n)  # events come every LOG_EVERY_S, not every batch
            state["bar"].set_postfix(loss=f"{event['loss']:.3f}", img_s=f"{event['images_per_s']:.0f}")
        elif kind == "epoch":
            if state["bar"] is not None:
                state["bar"].close()
                state["bar"] = None
            print(
                f"epoch {event['epoch']}: train loss {event['train_loss']:.4f} acc {event['train_acc']:.2%} | "
                f"test loss {event['test_loss']:.4f} acc {event['test_acc']:.2%} | {event['seconds']:.1f} s",
                flush=True,
            )
        elif kind == "end" and state["bar"] is not None:
            state["bar"].close()

    return echo


def cmd_train(args) -> int:
    from resnet_core import engine, runs

    run_dir = Path(args.run_dir) if args.run_dir else None
    if run_dir is not None and (run_dir / "config.json").is_file():
        config = TrainConfig.load(run_dir / "config.json")
    else:
        config = config_from_args(args)
        if int(os.environ.get("WORLD_SIZE", 1)) > 1:
            if run_dir is None:
                raise ConfigError("cli.torchrun_run_dir")
            engine.setup_distributed()
            if engine.world()[0] == 0:
                run_dir.mkdir(parents=True, exist_ok=True)
                config.run_dir = str(run_dir)
                config.save(run_dir / "config.json")
                runs.write_status(run_dir, runs.foreground_status())
            engine.dist.barrier()
        elif run_dir is None:
            run_dir = runs.create(config, here=True)
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
            config.run_dir = str(run_dir)
            config.save(run_dir / "config.json")
            runs.write_status(run_dir, runs.foreground_status())
    print(f"run directory: {run_dir}", flush=True)
    result = runs.train_run(run_dir, resume=args.resume, echo=progress_printer())
    rank = engine.world()[0]
    engine.teardown_distributed()
    if rank == 0:
        best = max(result["history"], key=lambda r: r["test_acc"], default=None)
        where = f"epoch {best['epoch']}" if best else "no epoch finished"
        print(
            f"{result['status']}: best test accuracy {result['best_acc']:.2%} ({where}) in "
            f"{result['seconds']:.1f} s; weights: {run_dir / 'best.pt'}"
        )
    return 0


def cmd_evaluate(args) -> int:
    from resnet_core import predict

    r = predict.evaluate_checkpoint(args.checkpoint, args.dataset, args.limit)
    if args.json:
        print(json.dumps({k: r[k] for k in ("dataset", "n", "acc", "loss", "per_class", "confusion", "classes")}))
        return 0
    print(f"{r['dataset']}: accuracy {r['acc']:.2%} on {r['n']} test images (loss {r['loss']:.4f})")
    width = max(len(c) for c in r["classes"])
    for name, acc in zip(r["classes"], r["per_class"]):
        print(f"  {name:<{width}}  {acc:.2%}")
    print("confusion matrix (rows: true class, columns: predicted):")
    for row in r["confusion"]:
        print("  " + " ".join(f"{v:5d}" for v in row))
    return 0


def cmd_predict(args) -> int:
    from resnet_core import predict

    if args.weights:
        from resnet_core import weights

        # An entry, or a model as `weights get` takes it ("resnet50"): whichever of its entries is cached.
        cfg = weights.cached(args.weights) or weights.candidates(args.weights)[0]
        predictor = predict.Predictor.from_weights(cfg.name, fetch=False)  # `weights get` fetches, with a bar
    else:
        predictor = predict.Predictor.from_checkpoint(args.checkpoint)
    failed = 0
    for result in predictor.predict_files(args.images, args.top_k):
        failed += "error" in result
        if args.json:
            print(json.dumps(result, ensure_ascii=False))
        elif "error" in result:
            print(f"{result['file']}: error: {result['error']}")
        else:
            tops = ", ".join(f"{t['label']} {t['prob']:.1%}" for t in result["top"])
            print(f"{result['file']}: {tops}")
    return 1 if failed == len(args.images) else 0


def cmd_runs(args) -> int:
    from resnet_core import runs

    if args.action == "list":
        rows = runs.list_runs()
        if not rows:
            print(f"no runs yet in {runs.runs_dir()}")
        for r in rows:
            acc = f"{r['best_acc']:.2%}" if r["best_acc"] is not None else "-"
            print(f"{r['run']:<48} {r['state']:<9} best {acc:>7}  {r['dataset']} / {r['model']}")
        return 0
    if not args.run:
        raise ConfigError("cli.run_name", action=args.action)
    run_dir = Path(args.run) if Path(args.run).is_dir() else runs.runs_dir() / args.run
    if not (run_dir / "config.json").is_file():
        raise ConfigError("cli.no_run", run=args.run, folder=runs.runs_dir())
    {"stop": runs.stop, "resume": runs.resume, "delete": runs.delete}[args.action](run_dir)
    print(f"{args.action}: {run_dir.name}")
    return 0


def cmd_datasets(args) -> int:
    from resnet_core import data

    if args.action == "delete":
        if not args.name:
            raise ConfigError("cli.usage", usage="python -m resnet_core datasets delete NAME")
        data.remove_folder(args.name)
        print(f"deleted {args.name}")
        return 0
    if args.action == "add":
        if not (args.name and args.path):
            raise ConfigError("cli.usage", usage="python -m resnet_core datasets add NAME PATH_OR_ZIP")
        info = data.add_folder(args.name, args.path)
        print(
            f"added {info.name}: {len(info.classes)} classes, train {sum(info.counts['train'])} / "
            f"test {sum(info.counts['test'])} images, {info.size} px"
        )
        for reason, n in (info.skipped or {}).items():
            print(f"  skipped {n}: {reason}")
        return 0
    if args.action == "show":
        print(json.dumps(data.describe(args.name).to_dict(), indent=1, ensure_ascii=False))
        return 0
    for name in data.list_datasets():
        spec = data.get_spec(name)
        here = "on disk" if data.is_present(name) else "download on first use"
        print(f"{name:<16} {spec.kind:<12} {len(spec.classes):>3} classes  {spec.channels}x{spec.size}px  {here}")
    return 0


def cmd_models(args) -> int:
    from resnet_core import models

    for name in models.list_models():
        spec = models.get_spec(name)
        print(f"{name:<18} {spec.family:<12} {spec.description}")
    return 0


def progress_bars():
    """progress(stage, done, total) of :mod:`resnet_core.weights` as one tqdm bar per stage;
    ``.clear()`` erases those left open (a failure is then one line)."""
    from tqdm import tqdm

    bars = {}

    def show(stage: str, done: float, total: float | None) -> None:
        bar = bars.get(stage)
        if bar is None:
            in_bytes = stage == "read"
            bar = bars[stage] = tqdm(
                total=total, desc=f"{stage:<8}", unit="B" if in_bytes else "it", unit_scale=in_bytes, leave=True
            )
        if total is not None and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)
        if total is not None and done >= total:
            bar.close()

    def clear() -> None:
        for bar in bars.values():
            bar.leave = False
            bar.close()

    show.clear = clear
    return show


def cmd_weights(args) -> int:
    import time

    from resnet_core import weights

    if args.action == "get":
        if not args.name:
            raise ConfigError("cli.usage", usage="python -m resnet_core weights get NAME")
        start, bars = time.monotonic(), progress_bars()
        try:
            cfg = weights.get(args.name, progress=bars)
        except BaseException:
            bars.clear()
            raise
        path = weights.path_of(cfg)
        print(
            f"{cfg.name} ({cfg.arch}, from {cfg.source}, {cfg.licence}): {path} "
            f"({path.stat().st_size / 1e6:.1f} MB), ready in {time.monotonic() - start:.1f} s"
        )
        return 0
    rows = weights.status()
    print(f"{'name':<30} {'model / variant':<24} {'source':<50} {'cached':<6} {'MB':>6}  licence")
    for r in rows:
        model = f"{r['arch']} / {r['variant']}" if r["variant"] else r["arch"]
        size = f"{r['size_mb']:.1f}" if r["size_mb"] is not None else "-"
        print(
            f"{r['name']:<30} {model:<24} {r['source']:<50} {'yes' if r['cached'] else 'no':<6} {size:>6}  "
            f"{r['licence']}"
        )
    hub = next(r["path"].parent for r in rows if r["source"].startswith("torchvision:"))
    print(f"converted weights: {weights.cache_dir()}; torchvision's: {hub}")
    print("get one with: python -m resnet_core weights get NAME (a model such as resnet50: whichever can be had)")
    return 0


def cmd_export(args) -> int:
    from resnet_core import export

    out = export.export(args.checkpoint, args.format, args.output)
    print(f"wrote {out}")
    return 0


def _backbone(args, echo) -> Path | str:
    """``--backbone``, else the newest finished run on ``--source`` (one with stages first), else
    a ResNet-20 trained on it now (:func:`strategies.backbone_config`)."""
    from resnet_core import runs, strategies

    if args.backbone and strategies.is_imagenet(args.backbone):
        from resnet_core import weights

        name = args.backbone.partition(":")[2] or "resnet50"
        bars = progress_bars()
        try:
            return f"imagenet:{weights.get(name, progress=bars).name}"  # cached: instant; else fetched here
        finally:
            bars.clear()
    if args.backbone:
        return Path(args.backbone)
    done = [r for r in runs.list_runs() if r["dataset"] == args.source and r["state"] == "finished" and r["has_best"]]
    if done:
        return Path(done[strategies.default_backbone(done, owner=None, source=args.source)]["path"]) / "best.pt"
    print(f"no finished {args.source} run: training a ResNet-20 on it first", flush=True)
    run_dir = runs.create(strategies.backbone_config(args.source), here=True)
    runs.train_run(run_dir, echo=echo)
    return run_dir / "best.pt"


def cmd_transfer_compare(args) -> int:
    from resnet_core import runs, strategies

    echo = progress_printer()
    backbone = _backbone(args, echo)
    recipe = {k: v for k, v in (("epochs", args.epochs), ("lr", args.lr)) if v is not None}
    k = args.k if args.k is not None else None if strategies.is_imagenet(backbone) else 50
    chosen = strategies.configs(backbone, args.target, k, **recipe)
    labels = f"{k} labelled images per class" if k else "every labelled image"
    print(f"backbone {backbone}; {labels} of {args.target}", flush=True)
    for name, config in chosen.items():
        if args.only and name not in args.only:
            continue
        print(f"--- {name}", flush=True)
        runs.train_run(runs.create(config, here=True), echo=echo)
    rows = strategies.table(next(iter(chosen.values())).extra["group"])
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'strategy':<11} {'K':>4} {'test acc':>9} {'best':>7} {'trainable':>10} {'of':>10} {'seconds':>8}")
    for r in rows:
        print(
            f"{r['strategy']:<11} {r['k'] or 'all':>4} {r['test_acc']:>9.2%} {r['best_acc']:>7.2%} "
            f"{r['trainable']:>10,} {r['parameters']:>10,} {r['seconds']:>8.1f}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m resnet_core", description="ResNet Lab: train and use residual networks."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model (each bundled dataset has a preset)")
    add_config_flags(p)
    p.add_argument("--run-dir", help="run directory; an existing one with config.json is trained as configured")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last.pt")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="accuracy, per-class accuracy and confusion matrix")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--dataset", help="default: the dataset it was trained on")
    p.add_argument("--limit", type=int, help="only the first N test images")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="top-k labels for image files")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint")
    which.add_argument("--weights", help="pretrained weights by name (python -m resnet_core weights lists them)")
    p.add_argument("images", nargs="+")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("runs", help="list runs, or stop / resume / delete one")
    p.add_argument("action", nargs="?", default="list", choices=("list", "stop", "resume", "delete"))
    p.add_argument("run", nargs="?")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("datasets", help="list datasets, show one, add a folder of images, or delete one")
    p.add_argument("action", nargs="?", default="list", choices=("list", "show", "add", "delete"))
    p.add_argument("name", nargs="?")
    p.add_argument("path", nargs="?")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("transfer-compare", help="transfer strategies side by side on K labels per class")
    p.add_argument(
        "--backbone",
        help="a run's best.pt, or imagenet:resnet50 (ImageNet weights, fetched if need be); "
        "default: the newest finished --source run",
    )
    p.add_argument("--source", default="mnist-sample", help="the backbone's dataset when --backbone is not given")
    p.add_argument("--target", default="fashion-sample")
    p.add_argument("--k", type=int, help="labelled training images per class; default: 50, every one for ImageNet")
    p.add_argument("--epochs", type=int, help="default: 15, 3 for ImageNet")
    p.add_argument(
        "--lr", type=float, help="default: 0.05, 0.01 for ImageNet (the backbone learns at a tenth of it in 'all')"
    )
    p.add_argument("--only", nargs="+", choices=("head", "last-stage", "all", "scratch"), help="a subset")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_transfer_compare)

    p = sub.add_parser("models", help="list registered models")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("weights", help="list pretrained weights and which are cached, or get one")
    p.add_argument("action", nargs="?", default="list", choices=("list", "get"))
    p.add_argument("name", nargs="?", help="an entry (resnet50_v1.keras) or a model (resnet50)")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("export", help="export weights as a plain state_dict (.pth) or ONNX")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--format", choices=("pth", "onnx"), default="pth")
    p.add_argument("--output", help="default: beside the checkpoint")
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from resnet_core.checkpoints import CheckpointError
    from resnet_core.data import DatasetUnavailable
    from resnet_core.folders import FolderError
    from resnet_core.models import WeightsUnavailable

    try:
        return args.func(args)
    except (
        ConfigError,
        CheckpointError,
        DatasetUnavailable,
        FolderError,
        WeightsUnavailable,
        ValueError,
        RuntimeError,
    ) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def run_rank() -> int:
    """``main`` as a torchrun rank: whatever happens, the rank leaves through ``os._exit``. A rank
    that failed never reached ``engine.teardown_distributed``, and gloo's threads torn down by the
    interpreter's finalization abort the process (SIGABRT, exit -6), hiding the exit code and the
    sentence printed. Everything a run keeps is already on disk (atomic writes): nothing is lost."""
    try:
        code = main()
    except SystemExit as err:  # argparse's usage errors
        code = err.code if isinstance(err.code, int) else 2
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        run_rank()
    sys.exit(main())
