"""`make bench`: podium's Trainer.fit against a plain PyTorch loop, same model and data.

In one process, `--repeats` times on each dataset (the demo and ../shared/data/cifar10-lt):
  1. podium: `train.build_*` from the real config, `Trainer.fit` for the same steps
     (the default callbacks and CSV logger on; the epoch-end work is off in both: validation,
     and the last.ckpt each epoch writes; its cost is reported apart, `checkpoint_ms`),
  2. a plain loop written here (manual batching from the same cached uint8 tensors, the same
     batched augmentation, the same normalisation, model, AdamW step, cosine schedule),
     interleaved step by step with podium's: one plain step runs in each of podium's
     step-end hooks and is timed apart, so that both see the same machine speed.
It reports training images/s of both and their ratio (median, min, max), the data loader's
images/s alone and followed by each augment option's batch augmentation (randaugment,
trivialaugment, resized_crop, erasing, MixUp/CutMix), prediction images/s, peak memory,
and the time from a fresh `python -m podium.train` to its first training step split into
phases. `photos`: the first-run decode of large photos built in a temporary folder, before
vs now (scripts/bench_decode.py). Prints JSON.

    python scripts/bench.py [--steps N] [--repeats 3] [--datasets demo,cifar10-lt,photos]
        [--precision 32-true] [--accelerator auto] [--demo data/demo] [--quick]

`--quick` (the test's setting): one start-up run (the first, which decodes) instead of two
and one photo size, so that a renamed field breaks the test rather than the next bench.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {"demo": ROOT / "data" / "demo",
            "cifar10-lt": ROOT.parent / "shared" / "data" / "cifar10-lt"}
WARMUP = 5  # steps not timed (allocator, oneDNN primitive caches)
# Timed steps per run (a demo step is ~40-70 ms on 2 CPU cores, a CIFAR-10-LT step ~300 ms).
STEPS = {"demo": 150, "cifar10-lt": 40}


def compose(root: Path, args: argparse.Namespace, extra: list[str] = ()):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    overrides = [f"data.root={root}", f"data.batch_size={args.batch_size}",
                 f"trainer.precision={args.precision}", f"trainer.accelerator={args.accelerator}",
                 "augment=flip", *extra]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(config_name="train", overrides=overrides, return_hydra_config=True)
    out = ROOT / "logs" / "bench" / "run"
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.hydra.runtime.output_dir = str(out)
    HydraConfig.instance().set_config(cfg)
    from podium.config import resolve_defaults

    return resolve_defaults(cfg)


def sync(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def plain_steps(datamodule, net_factory, augment, batch_size: int, device: torch.device,
                precision: str) -> Iterator[None]:
    """The hand-written reference, one training step per `next()`: a shuffled pass over the
    cached uint8 images in full batches, the same batched augmentation and normalisation,
    the model, cross-entropy, AdamW and the cosine schedule stepped each epoch."""
    train = datamodule.train_set
    images, labels = train.inputs[torch.from_numpy(train.index)], train.labels
    mean = torch.tensor(datamodule.spec.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(datamodule.spec.std, device=device).view(1, -1, 1, 1)
    net = net_factory().to(device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=30)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled="bf16" in precision)
    generator = torch.Generator().manual_seed(0)
    while True:
        for idx in torch.randperm(len(images), generator=generator).split(batch_size):
            if len(idx) < batch_size:
                continue
            x = augment(images[idx].to(device))
            y = labels[idx].to(device)
            x = ((x.float() / 255 - mean) / std).contiguous(memory_format=torch.channels_last)
            with autocast:
                loss = torch.nn.functional.cross_entropy(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            yield
        schedule.step()


def paired_fit(cfg, plain: Iterator[None], steps: int, device: torch.device
               ) -> tuple[float, float, float]:
    """podium's Trainer.fit for `steps` steps with one plain-loop step run inside each of its
    step-end hooks and timed apart: (podium img/s, plain img/s, ms of one checkpoint save).

    Step by step interleaving makes both see the same machine: on a shared VM the speed
    drifts by 10% within seconds, which separate runs would read as a difference."""
    import lightning as L

    from podium.build import build_run

    spent = {"podium": 0.0, "plain": 0.0}
    done, last = 0, None

    class Pair(L.Callback):  # the last callback; podium's work after it (module hook,
        # logging) falls into the next step's interval: every bit is counted once
        def on_train_batch_end(self, *args) -> None:
            nonlocal done, last
            now = sync(device)
            next(plain)
            after = sync(device)
            done += 1
            if done > WARMUP:  # steps 1..WARMUP: allocator, oneDNN primitive caches
                spent["podium"] += now - last
                spent["plain"] += after - now
            last = after

    datamodule, module, trainer = build_run(cfg, max_steps=steps, limit_val_batches=0,
                                            max_epochs=-1, enable_progress_bar=False)
    trainer.callbacks.append(Pair())
    trainer.fit(module, datamodule=datamodule)
    start = time.perf_counter()
    trainer.save_checkpoint(Path(cfg.paths.output_dir) / "bench.ckpt")
    save_ms = 1000 * (time.perf_counter() - start)
    images = cfg.data.batch_size * (steps - WARMUP)
    return images / spent["podium"], images / spent["plain"], save_ms


def loader_rate(datamodule, batches: int) -> float:
    start, n = time.perf_counter(), 0
    for i, (x, _) in enumerate(datamodule.train_dataloader()):
        n += len(x)
        if i + 1 == batches:
            break
    return n / (time.perf_counter() - start)


AUGMENT_OPTIONS = ["flip", "randaugment", "trivialaugment", "resized_crop", "erasing",
                   "trivialaugment+mix"]


def augment_rates(root: Path, args: argparse.Namespace, batches: int) -> dict[str, float]:
    """Images/s of the loader followed by each augment option's batch augmentation (and
    MixUp/CutMix for "+mix"): what the training step gets, to set beside what it uses."""
    from hydra.utils import instantiate

    from podium.build import build_datamodule

    rates = {}
    for option in AUGMENT_OPTIONS:
        name, _, mix = option.partition("+")
        cfg = compose(root, args, [f"augment={name}", *(["augment/mix=both"] if mix else [])])
        datamodule = build_datamodule(cfg)
        datamodule.setup("fit")
        augment = instantiate(cfg.augment.batch)
        mixer = instantiate(cfg.augment.mix, num_classes=len(datamodule.spec.class_names)) \
            if cfg.augment.mix else None
        best = 0.0
        for _ in range(3):  # the best of three: a shared machine only ever slows it down
            start, n = time.perf_counter(), 0
            for i, (x, y) in enumerate(datamodule.train_dataloader()):
                x = augment(x)
                if mixer is not None:
                    x, y = mixer(x, y)
                n += len(x)
                if i + 1 == batches:
                    break
            best = max(best, n / (time.perf_counter() - start))
        rates[option] = round(best, 1)
    return rates


def predict_rate(cfg, datamodule) -> float:
    import lightning as L

    from podium.build import build_module

    datamodule.setup("predict")
    module = build_module(cfg, datamodule.spec)
    trainer = L.Trainer(accelerator=cfg.trainer.accelerator, devices=1, logger=False,
                        precision=cfg.trainer.precision, enable_progress_bar=False)
    start = time.perf_counter()
    trainer.predict(module, dataloaders=datamodule.predict_test_dataloader(),
                    return_predictions=False)
    return len(datamodule.test_set) / (time.perf_counter() - start)


STARTUP = r"""
import time; t0 = time.perf_counter(); marks = {}
import lightning, hydra, torchmetrics, podium.train, podium.build as T, podium.config as C
marks["imports"] = time.perf_counter() - t0
import sys; sys.argv = ["podium.train", "data.root=%s", "paths.log_dir=%s",
                        "data.cache_dir=%s", "trainer.max_epochs=1"]
from hydra.core.hydra_config import HydraConfig
def first_step(cfg):
    t = time.perf_counter(); marks["config"] = t - t0 - marks["imports"]
    from podium.config import resolve_defaults; resolve_defaults(cfg)
    dm = T.build_datamodule(cfg); dm.prepare_data(); dm.setup("fit")
    marks["data_cache"] = time.perf_counter() - t; t = time.perf_counter()
    module = T.build_module(cfg, dm.spec)
    trainer = T.build_trainer(cfg, max_steps=1, limit_val_batches=0, enable_progress_bar=False)
    marks["model_build"] = time.perf_counter() - t; t = time.perf_counter()
    class Stop(lightning.Callback):
        def on_train_batch_start(self, *a):
            marks["fit_to_first_step"] = time.perf_counter() - t
            marks["total"] = time.perf_counter() - t0
            print("MARKS" + __import__("json").dumps(marks)); raise SystemExit(0)
    trainer.callbacks.append(Stop()); trainer.fit(module, datamodule=dm)
import hydra as H
H.main(version_base="1.3", config_path=C.CONFIG_DIR, config_name="train")(first_step)()
"""


def startup_time(root: Path, cache_dir: Path) -> dict:
    """A fresh interpreter: `python -m podium.train` phases until the first training step."""
    log_dir = ROOT / "logs" / "bench"
    proc = subprocess.run([sys.executable, "-c", STARTUP % (root, log_dir, cache_dir)],
                          cwd=ROOT, capture_output=True, text=True)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("MARKS")), None)
    if line is None:
        return {"error": proc.stderr.strip().splitlines()[-1:]}
    return {k: round(v, 2) for k, v in json.loads(line[5:]).items()}


def bench_dataset(name: str, root: Path, args: argparse.Namespace) -> dict:
    from hydra.utils import instantiate

    from podium.build import build_datamodule

    cfg = compose(root, args, ["callbacks.last_checkpoint=null"])
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    start = time.perf_counter()
    datamodule.setup("fit")
    decode_s = time.perf_counter() - start
    device = torch.device("cuda" if torch.cuda.is_available() and args.accelerator != "cpu"
                          else "cpu")
    net_factory = lambda: instantiate(cfg.model.net, num_classes=len(datamodule.spec.class_names),  # noqa: E731
                                      **datamodule.spec.net_inputs)
    augment = instantiate(cfg.augment.batch)
    steps = args.steps or STEPS[name]
    plain, podium, save_ms = [], [], []
    for _ in range(args.repeats):
        torch.manual_seed(0)
        steps_of_plain = plain_steps(datamodule, net_factory, augment, args.batch_size,
                                     device, args.precision)
        rates = paired_fit(cfg, steps_of_plain, steps, device)
        podium.append(rates[0])
        plain.append(rates[1])
        save_ms.append(rates[2])
    ratios = [p / q for p, q in zip(podium, plain, strict=True)]
    train_rate = statistics.median(podium)
    loader = loader_rate(datamodule, batches=min(50, len(datamodule.train_dataloader())))
    batches = 1 if args.quick else min(50, len(datamodule.train_dataloader()))
    augmented = augment_rates(root, args, batches=batches)
    return {
        "dataset": name, "train_images": len(datamodule.train_set), "steps": steps,
        "image_shape": [len(datamodule.spec.mean), *datamodule.spec.image_size],
        "decode_s": round(decode_s, 2),
        "plain_img_s": [round(x, 1) for x in plain], "podium_img_s": [round(x, 1) for x in podium],
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3), "ratio_max": round(max(ratios), 3),
        "checkpoint_ms": round(statistics.median(save_ms)),
        "loader_img_s": round(loader, 1), "loader_over_train": round(loader / train_rate, 1),
        "loader_and_augment_img_s": augmented,
        "loader_and_augment_over_train": {k: round(v / train_rate, 1)
                                          for k, v in augmented.items()},
        "predict_img_s": round(predict_rate(cfg, datamodule), 1),
        **startup_times(root, args.quick),
    }


def startup_times(root: Path, quick: bool = False) -> dict:
    """The first run (decodes the images into the cache), then every later run (loads it);
    `quick`: the first only."""
    with tempfile.TemporaryDirectory() as cache_dir:
        first = startup_time(root, Path(cache_dir))
        if quick:
            return {"startup_first_run_s": first}
        return {"startup_first_run_s": first, "startup_s": startup_time(root, Path(cache_dir))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="default: STEPS per dataset")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--datasets", default="demo,cifar10-lt,photos")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--demo", type=Path, default=DATASETS["demo"], help="the demo folder")
    parser.add_argument("--quick", action="store_true", help="one start-up run, one photo size")
    args = parser.parse_args()
    DATASETS["demo"] = args.demo

    results = []
    for name in args.datasets.split(","):
        if name == "photos":  # decode only: no training on them
            from bench_decode import run

            sizes, images = ([64], 8) if args.quick else ([64, 224, 384], 200)
            results.append({"dataset": "photos", **run(images, sizes, 6, None, args.repeats,
                                                         200 if args.quick else 12406)})
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
            continue
        root = DATASETS[name]
        if name != "demo" and not (root / "train.csv").exists():
            print(f"skipping {name}: {root} not found", file=sys.stderr)
            continue
        results.append(bench_dataset(name, root, args))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    machine = {"torch": torch.__version__, "threads": torch.get_num_threads(),
               "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"machine": machine, "args": {k: str(v) if isinstance(v, Path) else v
                                                   for k, v in vars(args).items()},
                      "peak_rss_mb": round(peak_mb),
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
