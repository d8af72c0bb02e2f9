"""The ``jaxfc`` command line: ``jaxfc train`` and ``jaxfc evaluate``.

``jaxfc train`` trains a FullyConnectedNet (on the bundled digits by default) and writes into
``--out`` (default: a new folder under ``runs/``): ``metrics.json``, ``history.csv``,
``training.png`` and ``checkpoint.npz``. ``jaxfc evaluate --checkpoint PATH`` reports the
accuracy of a saved model on a chosen split.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
from pathlib import Path

DEFAULTS = {
    "dataset": "digits",
    "hidden_dims": "256,256",
    "normalization": "batchnorm",
    "dropout": 0.1,
    "weight_scale": "he",
    "optimizer": "adam",
    "lr": 3e-3,
    "lr_decay": 0.95,
    "reg": 0.0,
    "epochs": 30,
    "batch_size": 50,
    "seed": 0,
    "gradients": "manual",
}

CHECKPOINT_FILE = "checkpoint.npz"


def _hidden_dims(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--hidden-dims takes comma-separated positive integers like 100,100; got {text!r}"
        ) from None
    if not dims or min(dims) <= 0:
        raise argparse.ArgumentTypeError(
            f"--hidden-dims takes comma-separated positive integers like 100,100; got {text!r}"
        )
    return dims


def _weight_scale(text: str):
    if text in ("he", "xavier"):
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--weight-scale takes a number or 'he' / 'xavier'; got {text!r}"
        ) from None


def _normalization(text: str):
    return None if text in ("none", "None", "") else text


def build_parser() -> argparse.ArgumentParser:
    from jaxfc.data import DATASETS
    from jaxfc.optim import OPTIMIZERS

    parser = argparse.ArgumentParser(prog="jaxfc", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a FullyConnectedNet",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--dataset", choices=DATASETS, default=DEFAULTS["dataset"])
    train.add_argument("--data-dir", help="folder with CIFAR-10 batches or MNIST IDX files")
    train.add_argument("--hidden-dims", type=_hidden_dims, default=DEFAULTS["hidden_dims"],
                       help="comma-separated hidden layer sizes")
    train.add_argument("--normalization", type=_normalization,
                       choices=[None, "batchnorm", "layernorm"],
                       default=DEFAULTS["normalization"], help="batchnorm, layernorm or none")
    train.add_argument("--dropout", type=float, default=DEFAULTS["dropout"],
                       help="drop probability after each hidden layer (0 disables)")
    train.add_argument("--weight-scale", type=_weight_scale, default=DEFAULTS["weight_scale"])
    train.add_argument("--optimizer", choices=OPTIMIZERS, default=DEFAULTS["optimizer"])
    train.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="learning rate")
    train.add_argument("--lr-decay", type=float, default=DEFAULTS["lr_decay"],
                       help="learning-rate factor applied after every epoch")
    train.add_argument("--reg", type=float, default=DEFAULTS["reg"], help="L2 strength")
    train.add_argument("--epochs", type=int, default=None,
                       help=f"total epochs (default {DEFAULTS['epochs']}; with --resume, "
                            "the run's own total)")
    train.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    train.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    train.add_argument("--gradients", choices=("manual", "autodiff"),
                       default=DEFAULTS["gradients"])
    train.add_argument("--compute-dtype", choices=("float32", "bfloat16", "float16"),
                       default="float32",
                       help="mixed precision: layers compute in this dtype, float32 masters")
    train.add_argument("--loss-scale", type=float, default=None,
                       help="loss scaling factor (default 1024 for float16, else 1)")
    train.add_argument("--devices", type=int, default=1,
                       help="data-parallel training over this many devices (batch split)")
    train.add_argument("--out", type=Path, help="output folder (default: runs/<timestamp>)")
    train.add_argument("--resume", action="store_true",
                       help=f"continue the run in --out from its {CHECKPOINT_FILE}, with the "
                            "settings it was started with (--epochs may raise the total)")
    train.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    train.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")

    evaluate = sub.add_parser("evaluate", help="accuracy of a saved model")
    evaluate.add_argument("--checkpoint", type=Path, required=True)
    evaluate.add_argument("--split", choices=("train", "val", "test"), default="test")
    evaluate.add_argument("--dataset", choices=DATASETS,
                          help="default: the dataset the model was trained on")
    evaluate.add_argument("--data-dir")

    from jaxfc.sweep import add_sweep_parser

    add_sweep_parser(sub)
    for command in sub.choices.values():
        command.add_argument(
            "--no-compile-cache", action="store_true",
            help="do not keep compiled programs on disk (default: kept in $JAXFC_CACHE_DIR or "
                 "~/.cache/jaxfc/xla, so a rerun skips compiling)")
    return parser


# --------------------------------------------------------------------------- train


def new_run_dir(prefix: str = "") -> Path:
    """A folder name under ``runs/`` that does not exist yet: ``runs/<prefix><timestamp>``."""
    base = Path("runs") / time.strftime(f"{prefix}%Y%m%d-%H%M%S")
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


def _settings_from_args(args) -> dict:
    return {
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "hidden_dims": list(args.hidden_dims),
        "normalization": args.normalization,
        "dropout": args.dropout,
        "weight_scale": args.weight_scale,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "lr_decay": args.lr_decay,
        "reg": args.reg,
        "epochs": DEFAULTS["epochs"] if args.epochs is None else args.epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "gradients": args.gradients,
        "compute_dtype": args.compute_dtype,
        "loss_scale": args.loss_scale,
        "devices": args.devices,
    }


def model_config(model) -> dict:
    config = dataclasses.asdict(model)
    config["dtype"] = str(config["dtype"])
    if config["compute_dtype"] is not None:
        config["compute_dtype"] = str(config["compute_dtype"])
    config["hidden_dims"] = list(config["hidden_dims"])
    return config


def model_from_config(config: dict):
    from jaxfc.models import FullyConnectedNet

    config = dict(config)
    config["hidden_dims"] = tuple(config["hidden_dims"])
    return FullyConnectedNet(**config)


def _load_data(dataset: str, data_dir: str | None, seed: int):
    from jaxfc.data import load_dataset

    if dataset != "digits" and not data_dir:
        raise ValueError(
            f"--dataset {dataset} is read from local files: pass --data-dir DIR (the digits "
            "set is the only one bundled)"
        )
    return load_dataset(dataset, data_dir=data_dir, seed=seed)


def _write_history_csv(path: Path, solver) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "train_acc", "val_acc", "mean_loss", "learning_rate",
                         "seconds"])
        steps = solver.steps_per_epoch
        for epoch, (train_acc, val_acc) in enumerate(
            zip(solver.train_acc_history, solver.val_acc_history, strict=True)
        ):
            losses = solver.loss_history[(epoch - 1) * steps: epoch * steps] if epoch else []
            mean_loss = sum(losses) / len(losses) if losses else ""
            lr = solver.lr_history[epoch - 1] if epoch else ""
            seconds = solver.epoch_time_history[epoch - 1] if epoch else ""
            writer.writerow([epoch, train_acc, val_acc, mean_loss, lr, seconds])


def plot_history(path: Path, solver, title: str = "") -> None:
    """Loss per iteration and train/validation accuracy per epoch, as a PNG."""
    # A bare Figure (no pyplot): leaves the caller's matplotlib backend alone.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(solver.loss_history, ".", markersize=2, alpha=0.5)
    ax_loss.set(xlabel="iteration", ylabel="training loss", title="Loss")
    ax_acc.plot(solver.train_acc_history, "-o", label="train")
    ax_acc.plot(solver.val_acc_history, "-o", label="val")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    ax_acc.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def train_command(args) -> int:
    start = time.perf_counter()
    from jaxfc.checkpoint import read_metadata
    from jaxfc.models import FullyConnectedNet
    from jaxfc.solver import Solver

    out = args.out if args.out is not None else new_run_dir()
    checkpoint_path = out / CHECKPOINT_FILE
    if args.resume:
        if args.out is None:
            raise SystemExit("jaxfc train: --resume needs --out DIR, the run to continue")
        if not checkpoint_path.exists():
            raise SystemExit(f"jaxfc train: --resume found no checkpoint at {checkpoint_path}")
        settings = read_metadata(checkpoint_path).get("cli")
        if settings is None:
            raise SystemExit(
                f"jaxfc train: {checkpoint_path} was not written by `jaxfc train` (it holds no "
                "run settings), so --resume cannot rebuild the run; load it with "
                "Solver.load_checkpoint in Python instead"
            )
        if args.epochs is not None:
            settings["epochs"] = args.epochs
    else:
        settings = _settings_from_args(args)
        if checkpoint_path.exists():
            raise SystemExit(
                f"jaxfc train: {out} already holds a run; pass --resume to continue it or "
                "choose another --out"
            )
    data = _load_data(settings["dataset"], settings["data_dir"], settings["seed"])
    out.mkdir(parents=True, exist_ok=True)
    input_dim = 1
    for size in data["X_train"].shape[1:]:
        input_dim *= size
    num_classes = int(max(data["y_train"].max(), data["y_val"].max())) + 1
    if data.get("class_names"):
        num_classes = len(data["class_names"])
    model = FullyConnectedNet(
        hidden_dims=tuple(settings["hidden_dims"]),
        input_dim=input_dim,
        num_classes=num_classes,
        dropout=settings["dropout"],
        normalization=settings["normalization"],
        reg=settings["reg"],
        weight_scale=settings["weight_scale"],
        compute_dtype=None if settings.get("compute_dtype") in (None, "float32") else
        settings["compute_dtype"],
        loss_scale=settings.get("loss_scale"),
    )
    mesh = None
    if settings.get("devices", 1) > 1:
        from jaxfc.parallel import data_mesh

        mesh = data_mesh(settings["devices"])
    solver = Solver(
        model,
        data,
        update_rule=settings["optimizer"],
        optim_config={"learning_rate": settings["lr"]},
        lr_decay=settings["lr_decay"],
        batch_size=settings["batch_size"],
        num_epochs=settings["epochs"],
        num_train_samples=None,
        print_every=0,
        verbose=not args.quiet,
        seed=settings["seed"],
        gradients=settings["gradients"],
        mesh=mesh,
        # What `evaluate` and `--resume` need to rebuild the run.
        checkpoint_metadata={"model": model_config(model), "cli": settings},
    )
    solver.checkpoint_path = checkpoint_path
    if args.resume:
        solver.load_checkpoint(checkpoint_path)
        print(f"resuming {out} at epoch {solver.epoch} of {settings['epochs']}")
    solver.train()

    metrics = {
        "train_acc": solver.check_accuracy(data["X_train"], data["y_train"]),
        "val_acc": solver.check_accuracy(data["X_val"], data["y_val"]),
        "test_acc": (solver.check_accuracy(data["X_test"], data["y_test"])
                     if "X_test" in data else None),
        "best_epoch": solver.best_epoch,
        "best_val_acc": solver.best_val_acc,
        "epochs": solver.epoch,
        "wall_time_s": None,
        "train_time_s": sum(solver.epoch_time_history),
        "settings": settings,
        "model": model_config(model),
    }
    _write_history_csv(out / "history.csv", solver)
    if not args.no_plot:
        plot_history(out / "training.png", solver,
                     title=f"{settings['dataset']}: {settings['hidden_dims']}")
    metrics["wall_time_s"] = time.perf_counter() - start
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    test = f"{metrics['test_acc']:.4f}" if metrics["test_acc"] is not None else "n/a"
    print(
        f"done: test acc {test}, val acc {metrics['val_acc']:.4f} (best epoch "
        f"{metrics['best_epoch']}), {metrics['wall_time_s']:.1f}s in this process; "
        f"wrote {out}/"
    )
    return 0


# --------------------------------------------------------------------------- evaluate


def evaluate_command(args) -> int:
    from jaxfc.checkpoint import read_metadata
    from jaxfc.solver import Solver, load_best_model

    metadata = read_metadata(args.checkpoint)
    if "model" not in metadata or "cli" not in metadata:
        raise SystemExit(
            f"jaxfc evaluate: {args.checkpoint} was not written by `jaxfc train` (its metadata "
            "has no model configuration)"
        )
    settings = metadata["cli"]
    model = model_from_config(metadata["model"])
    dataset = args.dataset or settings["dataset"]
    data_dir = args.data_dir or settings.get("data_dir")
    data = _load_data(dataset, data_dir, settings["seed"])
    params, model_state = load_best_model(args.checkpoint, model)
    split = args.split
    accuracy = Solver.evaluate(model, params, model_state, data[f"X_{split}"],
                               data[f"y_{split}"])
    print(json.dumps({"checkpoint": str(args.checkpoint), "dataset": dataset,
                      "split": split, "accuracy": accuracy,
                      "num_samples": int(data[f"X_{split}"].shape[0])}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if not args.no_compile_cache:
            from jaxfc.compilation_cache import enable_compilation_cache

            try:
                enable_compilation_cache()
            except OSError as error:  # an optimization: never a reason to stop the run
                print(f"jaxfc {args.command}: warning: {error}; compiling without a cache",
                      file=sys.stderr)
        if args.command == "train":
            return train_command(args)
        if args.command == "sweep":
            from jaxfc.sweep import sweep_command

            return sweep_command(args)
        return evaluate_command(args)
    except (OSError, ValueError, TypeError) as error:
        print(f"jaxfc {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
