"""The benchmark suite of issue 5: jaxfc against numpy, JAX + optax and PyTorch, side by side.

    python bench/suite.py [--quick] [--workloads W1,W2] [--peers jaxfc-manual,torch]
                          [--device cpu|gpu] [--dtype float32|bfloat16]
                          [--json out.json] [--results bench/RESULTS.md]

Every peer trains the same networks (:data:`peers.WORKLOADS`) on the same synthetic
CIFAR-10-shaped data from the same initial parameters (jaxfc's ``model.init``) with Adam at
lr 1e-3. Each (peer, workload) runs in its own worker process, started while nothing else
runs, so it imports only its framework and its caches are cold; the parent only tells the
workers when to train and collects their timings. Per workload:

1. each worker builds its trainer and trains its first call (1 step, or 1 epoch for the
   scan-based peers): **first step** = that wall time minus the remaining steps of the call
   at the speed of the next call, run right after it (compilation + setup + one step);
2. **throughput**: ``--reps`` repetitions, each running every peer in turn (order rotated
   per repetition) for about ``--seconds``; the median samples/s, with min-max;
3. **peak memory**: growth of the worker's peak RSS (VmHWM, reset) from just before the
   trainer is built (framework imported, data in numpy) to the end of the timed runs:
   parameters, optimizer state, device copies of the data, activations and compiler
   memory;
4. **correctness gate**: every peer trains ``--gate-steps`` steps on the same minibatches
   of unseen data with dropout off (batch norm on for W2); each loss curve is compared with
   a float64 numpy reference. The run exits non-zero if a peer disagrees (see
   ``gate_check``).

Also measured: the machine's matmul peak in the compute dtype (best of numpy, JAX and
PyTorch on a square matmul, each in a fresh process), each workload's FLOPs per sample
(forward, dW and dX matmuls, no dX for the first layer) and % of the peak each peer
reaches, and 16 TwoLayerNets trained at once vs one after another (with ``jaxfc.sweep``).
A missing optional package (optax, torch) skips its peers with a note.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import io
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402

RESULTS_BEGIN = "<!-- suite:begin {key} (bench/suite.py --results writes this; edits are lost) -->"
RESULTS_END = "<!-- suite:end {key} -->"
SWEEP_MODELS = 16


GATE_FIRST_RTOL = 1e-5
GATE_PROGRESS_RTOL = 0.15
GATE_BF16_RTOL = 5e-2


def gate_check(losses: np.ndarray, reference: np.ndarray, dtype: str) -> dict:
    """Compare a loss curve with the float64 reference.

    float32: the first loss (one forward pass from the same weights) within a relative
    ``GATE_FIRST_RTOL``; every later loss within ``GATE_PROGRESS_RTOL`` of the progress the
    reference has made by then, ``|L_s - R_s| <= tol * max(|R_0 - R_s|, 1e-3 R_0)``. Not a
    fixed relative tolerance, because float32 runs drift apart by themselves: Adam's first
    updates are nearly ``lr * sign(g)``, so the few weights whose gradient is about as small
    as its rounding error (among W1's 3e5 first-layer weights there always are some) move
    differently in every implementation, and the deep batch-normalized W2 amplifies that to
    ~2% of its progress by step 30. An error in a layer or the optimizer changes the progress
    itself: a learning rate 10% off gives 30-100% of it.
    bfloat16: every loss within a relative ``GATE_BF16_RTOL``.
    """
    rel = np.abs(losses - reference) / np.abs(reference)
    progress = np.maximum(np.abs(reference[0] - reference), 1e-3 * abs(reference[0]))
    of_progress = np.abs(losses - reference) / progress
    if dtype == "bfloat16":
        bad = np.flatnonzero(~(rel <= GATE_BF16_RTOL))
        tol = np.full(len(rel), GATE_BF16_RTOL)
    else:
        ok = np.concatenate([[rel[0] <= GATE_FIRST_RTOL], of_progress[1:] <= GATE_PROGRESS_RTOL])
        bad = np.flatnonzero(~ok)
        tol = np.array([GATE_FIRST_RTOL] + [GATE_PROGRESS_RTOL] * (len(rel) - 1))
    return {
        "losses": losses.tolist(),
        "first_rel_dev": float(rel[0]),
        "max_rel_dev": float(np.max(rel)),
        "max_dev_of_progress": float(np.max(of_progress[1:], initial=0.0)),
        "passed": bad.size == 0,
        "first_failure": None if bad.size == 0 else {
            "step": int(bad[0]) + 1, "loss": float(losses[bad[0]]),
            "reference": float(reference[bad[0]]), "tolerance": float(tol[bad[0]])},
    }


# -------------------------------------------------------------------------------------------
# Worker process: one (peer, workload)


def _reset_peak_rss() -> float:
    """Reset the peak-RSS mark (Linux ``/proc/self/clear_refs``) and return the current RSS
    in MB. ``ru_maxrss`` cannot be reset and survives ``exec`` (a worker would inherit its
    parent's peak), so it is only the fallback."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _proc_status_mb("VmRSS")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_rss_mb() -> float:
    try:
        return _proc_status_mb("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _device_peak_mb(device: str) -> float | None:
    """Peak accelerator memory of this process (None on the CPU)."""
    if device == "cpu":
        return None
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.max_memory_allocated() / 2**20
    if "jax" in sys.modules:
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            return stats["peak_bytes_in_use"] / 2**20
    return None


def _proc_status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise OSError(f"no {field} in /proc/self/status")


def worker_main(spec_json: str) -> None:
    """Serve JSON commands on stdin, one JSON reply per line on the real stdout (anything the
    libraries print goes to stderr)."""
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def reply(obj):
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    try:
        spec = json.loads(spec_json)
        peer = peers.PEERS[spec["peer"]]
        workload = peers.WORKLOADS[spec["workload"]]
        config = peers.RunConfig(**spec["config"])
        t0 = time.perf_counter()
        module = peers.load_peer(peer)
        import_s = time.perf_counter() - t0
        X, y = peers.make_data(spec["num_samples"], config.seed)
        with np.load(spec["params"]) as f:
            params = {k: f[k] for k in f.files}
        rss0 = _reset_peak_rss()
        t0 = time.perf_counter()
        trainer = module.make(workload, params, X, y, config=config, **peer.options)
        trainer.run_steps(trainer.steps_per_call)
        first_call_s = time.perf_counter() - t0
        # The next call, back to back, prices the first call's other steps: the machine's
        # speed drifts over seconds, so a rate measured later would skew the first step.
        t0 = time.perf_counter()
        trainer.run_steps(trainer.steps_per_call)
        next_call_s = time.perf_counter() - t0
        reply({"ok": True, "steps_per_call": trainer.steps_per_call, "import_s": import_s,
               "first_call_s": first_call_s, "next_call_s": next_call_s})
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd["cmd"] == "run":
                t0 = time.perf_counter()
                trainer.run_steps(cmd["steps"])
                reply({"ok": True, "seconds": time.perf_counter() - t0})
            elif cmd["cmd"] == "mem":
                reply({"ok": True, "peak_rss_delta_mb": _peak_rss_mb() - rss0,
                       "device_peak_mb": _device_peak_mb(config.device)})
            elif cmd["cmd"] == "gate":
                Xg, yg, indices = gate_data(workload, cmd["steps"], config.seed)
                gate_trainer = module.make(workload.without_dropout(), params, Xg, yg,
                                           config=config, **peer.options)
                reply({"ok": True, "losses": gate_trainer.train_on(indices).tolist()})
            elif cmd["cmd"] == "quit":
                break
    except Exception:
        reply({"ok": False, "error": traceback.format_exc()})


def gate_data(workload, steps: int, seed: int):
    """Fresh data (never trained on) and ``steps`` disjoint minibatches of it."""
    B = workload.batch_size
    X, y = peers.make_data(steps * B, seed + 1000)
    indices = np.random.default_rng(seed + 1001).permutation(steps * B).reshape(steps, B)
    return X, y, indices.astype(np.int32)


class Worker:
    def __init__(self, peer: str, workload: str, config: peers.RunConfig, num_samples: int,
                 params_path: str, env: dict):
        spec = {"peer": peer, "workload": workload, "config": config.__dict__,
                "num_samples": num_samples, "params": params_path}
        self.name = peer
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
            env=env,
        )
        self.hello = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.stderr.seek(0)
            err = self.stderr.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"worker {self.name} died:\n{err}")
        msg = json.loads(line)
        if not msg.get("ok"):
            raise RuntimeError(f"worker {self.name} failed:\n{msg.get('error')}")
        return msg

    def request(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        with contextlib.suppress(Exception):
            self.proc.stdin.write('{"cmd": "quit"}\n')
            self.proc.stdin.flush()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


# -------------------------------------------------------------------------------------------
# Measurements in the parent


def machine_info(config: peers.RunConfig) -> dict:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {"python": platform.python_version()}
    for package in ("jax", "jaxlib", "numpy", "torch", "optax"):
        try:
            versions[package] = __import__(package).__version__
        except ImportError:
            versions[package] = "not installed"
    info = {
        "cpu": cpu,
        "cores": peers.num_cores(),
        "versions": versions,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": config.device,
        "dtype": config.dtype,
        "loadavg_start": _loadavg(),
    }
    if config.device == "gpu":
        import jax

        info["gpu"] = jax.devices()[0].device_kind
    return info


def _loadavg():
    with contextlib.suppress(OSError):
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    return None


def matmul_peak(config: peers.RunConfig, n: int, reps: int, env: dict) -> dict:
    """Best GFLOP/s of an n x n x n matmul in the compute dtype, over numpy, JAX and PyTorch
    (those installed and able to run the configuration), each in a fresh process."""
    out = {"n": n, "dtype": config.dtype}
    libs = [lib for lib in ("numpy", "jax", "torch") if importlib.util.find_spec(lib)]
    if config.device != "cpu" or config.dtype != "float32":
        libs.remove("numpy")
    if config.dtype != "float32" and "torch" in libs:
        libs.remove("torch")
    for lib in libs:
        spec = {"lib": lib, "n": n, "reps": reps, "device": config.device,
                "dtype": config.dtype, "threads": config.torch_threads or peers.num_cores()}
        proc = subprocess.run([sys.executable, __file__, "--matmul-worker", json.dumps(spec)],
                              capture_output=True, text=True, env=env, timeout=300)
        try:
            out[f"{lib}_gflops"] = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            _log(f"matmul peak with {lib} failed: {proc.stderr[-1000:]}")
    out["peak_gflops"] = max(v for k, v in out.items() if k.endswith("_gflops"))
    return out


def matmul_worker_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    n, reps, lib = spec["n"], spec["reps"], spec["lib"]
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    if lib == "numpy":
        run = lambda: a @ b
    elif lib == "jax":
        import jax
        import jax.numpy as jnp

        dtype = jnp.bfloat16 if spec["dtype"] == "bfloat16" else jnp.float32
        ja, jb = jnp.asarray(a, dtype), jnp.asarray(b, dtype)
        f = jax.jit(jnp.matmul)
        run = lambda: f(ja, jb).block_until_ready()
    else:
        import torch

        torch.set_num_threads(spec["threads"])
        device = "cuda" if spec["device"] == "gpu" else "cpu"
        ta, tb = torch.from_numpy(a).to(device), torch.from_numpy(b).to(device)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        run = lambda: (ta @ tb, sync())
    run()
    best = min(_timed(run) for _ in range(reps))
    print(json.dumps(2 * n**3 / best / 1e9))


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_workload(wname, peer_names, config, args, env, tmpdir) -> dict:
    workload = peers.WORKLOADS[wname]
    B = workload.batch_size
    params = peers.init_params(workload, config.seed)
    params_path = os.path.join(tmpdir, f"{wname}_params.npz")
    np.savez(params_path, **params)
    result = {"description": workload.description, "batch_size": B,
              "flops_per_sample": workload.flops_per_sample(), "peers": {}, "skipped": {}}

    reference = None
    if args.gate_steps:
        from peers import numpy_peer

        Xg, yg, indices = gate_data(workload, args.gate_steps, config.seed)
        ref = numpy_peer.make(workload.without_dropout(), params, Xg, yg,
                              config=peers.RunConfig(seed=config.seed), dtype=np.float64)
        reference = ref.train_on(indices)
        result["gate_reference"] = reference.tolist()
        del Xg, yg, ref

    workers: dict[str, Worker] = {}
    try:
        for name in peer_names:
            reason = peers.unsupported(peers.PEERS[name], config)
            if reason:
                result["skipped"][name] = reason
                continue
            _log(f"  {wname}: starting {name}")
            workers[name] = Worker(name, wname, config, args.samples, params_path, env)

        # Steady-state speed per worker, to size the timed runs and to get the first step.
        per_step, run_steps = {}, {}
        for name, w in workers.items():
            spc = w.hello["steps_per_call"]
            w.request(cmd="run", steps=spc)
            calls = 1
            while True:
                t = w.request(cmd="run", steps=calls * spc)["seconds"]
                if t > 0.2 * args.seconds or calls >= 64:
                    break
                calls *= 4
            per_step[name] = t / (calls * spc)
            calls = max(1, round(args.seconds / (per_step[name] * spc)))
            run_steps[name] = calls * spc
            first = first_step_s(w.hello)
            result["peers"][name] = {
                "steps_per_call": spc,
                "import_s": w.hello["import_s"],
                "first_call_s": w.hello["first_call_s"],
                "first_step_s": first,
                "steps_per_timing": run_steps[name],
            }

        names = list(workers)
        rates = {name: [] for name in names}
        for r in range(args.reps):
            _log(f"  {wname}: repetition {r + 1}/{args.reps}")
            for name in names[r % len(names):] + names[: r % len(names)]:
                t = workers[name].request(cmd="run", steps=run_steps[name])["seconds"]
                rates[name].append(run_steps[name] * B / t)

        for name, w in workers.items():
            rec = result["peers"][name]
            rec["samples_per_s"] = statistics.median(rates[name])
            rec["samples_per_s_min"] = min(rates[name])
            rec["samples_per_s_max"] = max(rates[name])
            rec["samples_per_s_reps"] = rates[name]
            mem = w.request(cmd="mem")
            rec["peak_rss_delta_mb"] = mem["peak_rss_delta_mb"]
            rec["device_peak_mb"] = mem["device_peak_mb"]

        if reference is not None:
            for name, w in workers.items():
                _log(f"  {wname}: gate {name}")
                losses = np.asarray(w.request(cmd="gate", steps=args.gate_steps)["losses"])
                result["peers"][name]["gate"] = gate_check(losses, reference, config.dtype)
    finally:
        for w in workers.values():
            w.close()
    return result


def first_step_s(hello: dict) -> float:
    """A worker's time to its first step: its first call minus that call's other steps,
    priced at the back-to-back next call's speed."""
    spc = hello["steps_per_call"]
    return hello["first_call_s"] - (spc - 1) / spc * hello["next_call_s"]


def measure_cached_first_step(args, config, env, tmpdir, workload_result) -> dict:
    """jaxfc's time to the first step on W1 with its persistent compilation cache
    (``jaxfc.enable_compilation_cache``, on by default in the ``jaxfc`` command): two fresh
    workers share an empty cache folder; the first compiles and writes it (cold), the second
    loads the programs (warm: a rerun of the same experiment)."""
    peer = workload_result["peers"].get("jaxfc-manual")
    if not peer:
        return {"measured": False, "note": "not measured: jaxfc-manual did not run on W1"}
    params_path = os.path.join(tmpdir, "W1_params.npz")
    cache_env = {**env, "JAXFC_BENCH_CACHE_DIR": os.path.join(tmpdir, "xla-cache")}
    result = {"measured": True}
    for run in ("cold", "warm"):
        w = Worker("jaxfc-manual", "W1", config, args.samples, params_path, cache_env)
        w.close()
        result[f"{run}_s"] = first_step_s(w.hello)
    return result


def measure_sweep(args, env) -> dict:
    """16 TwoLayerNets (seeds 0-15, learning rates 3e-4 to 3e-3) trained at once by
    ``jaxfc.sweep.sweep`` (with its default batching; also with ``shared_batches=True``)
    vs the same 16 trained by 16 Solvers one after another, in a fresh
    process. Steady state: the epochs after the first (which compiles), timed by the
    sweep's per-epoch log and the Solvers' ``epoch_time_history``; both record training and
    validation accuracy after every epoch, as they do by default."""
    if importlib.util.find_spec("jaxfc.sweep") is None:
        return {"measured": False, "note": "not measured: jaxfc.sweep does not exist yet"}
    spec = {"samples": args.sweep_samples, "epochs": 2 if args.quick else 3,
            "models": 4 if args.quick else SWEEP_MODELS}
    proc = subprocess.run([sys.executable, __file__, "--sweep-worker", json.dumps(spec)],
                          capture_output=True, text=True, env=env, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        return {"measured": False, "note": "failed: " + (proc.stderr or proc.stdout)[-2000:]}
    return json.loads(lines[-1])


def sweep_worker_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import jax

    from jaxfc import Solver
    from jaxfc.sweep import sweep

    n, E, K, B = spec["samples"], spec["epochs"], spec["models"], 100
    X, y = peers.make_data(n + 1000, 0)
    data = {"X_train": X[:n], "y_train": y[:n], "X_val": X[n:], "y_val": y[n:]}
    model = peers.WORKLOADS["W1"].jaxfc_model()
    lrs = [float(v) for v in np.geomspace(3e-4, 3e-3, K)] if K > 1 else [1e-3]
    settings = [{"learning_rate": lr, "seed": k} for k, lr in enumerate(lrs)]
    common = {"update_rule": "adam", "batch_size": B, "num_train_samples": 1000,
              "num_epochs": E}

    def at_once(**options):
        log = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(log):
            sweep(model, data, settings, keep_params=False, verbose=True, **common, **options)
        total = time.perf_counter() - t0
        epoch_s = [float(m.group(2)) for m in re.finditer(
            r"\(Epoch (\d+) / \d+\).*?([\d.]+)s\s*$", log.getvalue(), re.M)]
        if len(epoch_s) != E:
            raise RuntimeError(f"expected {E} per-epoch times in jaxfc.sweep's log, got "
                               f"{epoch_s}:\n{log.getvalue()[-1000:]}")
        return sum(epoch_s[1:]), total  # steady state: the epochs after the first

    def one_after_another():
        total, steady = 0.0, 0.0
        for k, lr in enumerate(lrs):
            t0 = time.perf_counter()
            solver = Solver(model, data, optim_config={"learning_rate": lr}, seed=k,
                            verbose=False, **common).train()
            jax.block_until_ready(solver.params)
            total += time.perf_counter() - t0
            steady += sum(solver.epoch_time_history[1:])
        return steady, total

    # Two rounds in opposite orders (ABC CBA), steady-state times summed over both: a slow
    # spell of a shared machine then weighs on every way alike.
    steady = {"at_once": 0.0, "shared": 0.0, "sequential": 0.0}
    totals = {}
    ways = {"at_once": lambda: at_once(), "shared": lambda: at_once(shared_batches=True),
            "sequential": lambda: one_after_another()}
    for order in (list(ways), list(ways)[::-1]):
        for way in order:
            steady_s, total = ways[way]()
            steady[way] += steady_s
            totals.setdefault(way, total)
    at_once_total, seq_total = totals["at_once"], totals["sequential"]
    model_samples = 2 * K * (E - 1) * max(n // B, 1) * B
    at_once_rate = model_samples / steady["at_once"]
    shared_rate = model_samples / steady["shared"]
    seq_rate = model_samples / steady["sequential"]
    proto.write(json.dumps({
        "measured": True, "models": K, "samples": n, "epochs": E,
        "at_once": at_once_rate, "sequential": seq_rate, "speedup": at_once_rate / seq_rate,
        "at_once_shared": shared_rate, "speedup_shared": shared_rate / seq_rate,
        "at_once_total_s": at_once_total, "sequential_total_s": seq_total,
        "note": f"epochs 2-{E} of {E}, N = {n}, accuracy recorded every epoch, two rounds in "
                f"opposite orders; end to end (with compilation, first round): at once "
                f"{at_once_total:.1f} s, one after another {seq_total:.1f} s.",
    }) + "\n")
    proto.flush()


# -------------------------------------------------------------------------------------------
# Report


def _fmt_rate(v):
    return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"


def _fmt_mem(r) -> str:
    text = f"{r['peak_rss_delta_mb']:.0f} MB"
    if r.get("device_peak_mb") is not None:
        text += f" (GPU {r['device_peak_mb']:.0f} MB)"
    return text


def _fmt_ratio(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}x"


def best_peer(wres) -> tuple[str | None, float]:
    others = {n: r["samples_per_s"] for n, r in wres["peers"].items()
              if not n.startswith("jaxfc")}
    if not others:
        return None, float("nan")
    name = max(others, key=others.get)
    return name, others[name]


def targets(report) -> list[dict]:
    rows = []
    wl = report["workloads"]

    def rate(w, p):
        return wl.get(w, {}).get("peers", {}).get(p, {}).get("samples_per_s")

    for w, goal in (("W1", 1.15), ("W2", 1.15), ("W3", 1.0)):
        if w not in wl:
            continue
        best, best_rate = best_peer(wl[w])
        jr = rate(w, "jaxfc-manual")
        value = jr / best_rate if jr and best else None
        rows.append({"target": f"{w}: jaxfc (Solver, manual) / best peer ({best}) >= {goal}",
                     "value": value, "goal": goal, "fmt": "{:.2f}x"})
    if "W1" in wl and rate("W1", "jaxfc-manual"):
        pct = (rate("W1", "jaxfc-manual") * wl["W1"]["flops_per_sample"]
               / (report["matmul"]["peak_gflops"] * 1e9))
        rows.append({"target": "W1: jaxfc >= 40% of the matmul peak", "value": 100 * pct,
                     "goal": 40, "fmt": "{:.1f}%"})
        first = wl["W1"]["peers"]["jaxfc-manual"]["first_step_s"]
        rows.append({"target": "W1: jaxfc time to the first step <= 0.5 s (no cache)",
                     "value": first, "goal": 0.5, "fmt": "{:.2f} s", "lower": True})
        cached = report.get("cached_first_step", {})
        if cached.get("measured"):
            rows.append({"target": "W1: the same, rerun with jaxfc's compilation cache",
                         "value": cached["warm_s"], "goal": 0.5, "fmt": "{:.2f} s",
                         "lower": True})
    sweep = report.get("sweep", {})
    full = sweep.get("measured") and sweep.get("models") == SWEEP_MODELS
    note = sweep.get("note") if not sweep.get("measured") else (
        None if full else f"not measured: {sweep.get('models')} models only (--quick)")
    rows.append({"target": f"{SWEEP_MODELS} models at once >= 2x one after another",
                 "value": sweep.get("speedup") if full else None, "goal": 2.0,
                 "fmt": "{:.2f}x", "note": note})
    for w in wl:
        m, a = rate(w, "jaxfc-manual"), rate(w, "jaxfc-autodiff")
        if m and a:
            rows.append({"target": f"{w}: jaxfc manual / autodiff >= 1.0", "value": m / a,
                         "goal": 1.0, "fmt": "{:.2f}x"})
    for row in rows:
        v = row["value"]
        row["met"] = None if v is None else (v <= row["goal"] if row.get("lower")
                                              else v >= row["goal"])
    return rows


def render(report) -> str:
    info, cfg = report["machine"], report["config"]
    v = info["versions"]
    busy = info["loadavg_start"] and max(info["loadavg_start"][0],
                                         (info.get("loadavg_end") or [0])[0]) > info["cores"]
    lines = [
        *(["**The machine was busy** (load average above the core count): timings are noisy "
           "and BLAS/OpenMP libraries that spin-wait (numpy, PyTorch) suffer most.", ""]
          if busy else []),
        f"Machine: {info['cpu']}, {info['cores']} cores"
        + (f", GPU {info['gpu']}" if info.get("gpu") else "")
        + f"; load average at start {info['loadavg_start']}, at end {info.get('loadavg_end')}.",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + f". {info['date']}.",
        f"Run: `{cfg['command']}` (device {info['device']}, {info['dtype']}; N = "
        f"{cfg['samples']} samples; median of {cfg['reps']} interleaved repetitions of "
        f"~{cfg['seconds']} s each).",
        "",
    ]
    mm = report["matmul"]
    parts = [f"{k.split('_')[0]} {v:.0f}" for k, v in mm.items()
             if k.endswith("_gflops") and k != "peak_gflops"]
    lines += [f"{mm['dtype'].capitalize()} matmul peak ({mm['n']}^3): "
              f"**{mm['peak_gflops']:.0f} GFLOP/s** "
              f"({', '.join(parts)}).", ""]
    lines += [
        "| workload | peer | samples/s | min-max | vs best peer | % of peak | first step | "
        "peak RSS delta | gate: step 1 / of progress / max rel dev |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for w, wres in report["workloads"].items():
        _, best_rate = best_peer(wres)
        fps = wres["flops_per_sample"]
        for name, r in wres["peers"].items():
            g = r.get("gate")
            gate = ("not run" if g is None else
                    f"{g['first_rel_dev']:.0e} / {g['max_dev_of_progress']:.0e} / "
                    f"{g['max_rel_dev']:.0e} " + ("ok" if g["passed"] else "**FAIL**"))
            pct = 100 * r["samples_per_s"] * fps / (report["matmul"]["peak_gflops"] * 1e9)
            lines.append(
                f"| {w} | {name} | {_fmt_rate(r['samples_per_s'])} | "
                f"{_fmt_rate(r['samples_per_s_min'])}-{_fmt_rate(r['samples_per_s_max'])} | "
                f"{_fmt_ratio(r['samples_per_s'] / best_rate)} | {pct:.1f}% | "
                f"{r['first_step_s']:.2f} s | {_fmt_mem(r)} | {gate} |"
            )
        for name, why in wres["skipped"].items():
            lines.append(f"| {w} | {name} | skipped: {why} | | | | | | |")
    lines += ["", "Workloads: " + "; ".join(
        f"{w} = {r['description']}, {r['flops_per_sample'] / 1e6:.2f} MFLOP/sample"
        for w, r in report["workloads"].items()) + ".", ""]
    cached = report.get("cached_first_step", {})
    if cached.get("measured"):
        lines += [f"jaxfc's first step on W1 with its compilation cache "
                  f"(`jaxfc.enable_compilation_cache`, on in the `jaxfc` command): "
                  f"{cached['cold_s']:.2f} s when it compiles and writes the cache, "
                  f"{cached['warm_s']:.2f} s when a fresh process reruns it "
                  f"(the table's first step runs without a cache, like the other peers).", ""]
    sweep = report["sweep"]
    if sweep.get("measured"):
        lines.append(
            f"{sweep['models']} TwoLayerNets: at once {_fmt_rate(sweep['at_once'])} "
            f"model-samples/s, one after another {_fmt_rate(sweep['sequential'])}: "
            f"**{sweep['speedup']:.2f}x**; sharing the minibatches "
            f"(`shared_batches=True`) {_fmt_rate(sweep['at_once_shared'])}: "
            f"{sweep['speedup_shared']:.2f}x. {sweep.get('note', '')}")
    else:
        lines.append(f"{SWEEP_MODELS} TwoLayerNets at once vs one after another: "
                     f"{sweep['note']}.")
    lines += ["", "Targets (issue 5):", "", "| target | value | met |", "|---|---:|---|"]
    for row in report["targets"]:
        value = "-" if row["value"] is None else row["fmt"].format(row["value"])
        met = {True: "yes", False: "**no**", None: row.get("note") or "not measured"}
        lines.append(f"| {row['target']} | {value} | {met[row['met']]} |")
    lines += ["", "first step: compilation + setup + one step, in a fresh process. peak RSS "
              "delta: growth of the worker's peak resident memory while building and "
              "training (parameters, optimizer state, device copies of the data, "
              "activations, compiler). gate: loss curve vs a float64 numpy reference "
              "(same weights and minibatches, dropout off): relative deviation of the "
              "first loss, largest deviation as a fraction of the reference's progress "
              "since step 1, largest relative deviation."]
    return "\n".join(lines) + "\n"


def write_results(path: Path, text: str, key: str) -> None:
    """Replace the block of ``path`` generated for ``key`` (device and dtype: the CPU and
    GPU runs keep a block each), keeping everything else."""
    begin, end = RESULTS_BEGIN.format(key=key), RESULTS_END.format(key=key)
    block = f"## Suite run: {key}\n\n{begin}\n{text}{end}"
    if path.exists():
        old = path.read_text()
        start = old.find(f"## Suite run: {key}\n")
        if start >= 0 and end in old[start:]:
            stop = old.index(end, start) + len(end)
            path.write_text(old[:start] + block + old[stop:])
            return
        path.write_text(old.rstrip("\n") + "\n\n" + block + "\n")
        return
    path.write_text(
        "# Benchmark results\n\nThe 'Suite run' blocks are regenerated by `python "
        "bench/suite.py --results bench/RESULTS.md` (one per device and dtype); write notes "
        f"(what was tried, what each gave) outside them.\n\n{block}\n\n## What we tried\n\n")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: small data, 2 repetitions, short timings, 10 gate steps")
    p.add_argument("--workloads", default=",".join(peers.WORKLOADS))
    p.add_argument("--peers", default=",".join(peers.PEERS))
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--samples", type=int, help="training samples N (default 10000)")
    p.add_argument("--reps", type=int, help="interleaved repetitions (default 5)")
    p.add_argument("--seconds", type=float, help="length of one timed run (default 1.0)")
    p.add_argument("--gate-steps", type=int, help="steps of the correctness gate (default 30; "
                   "0 skips it)")
    p.add_argument("--matmul-n", type=int, help="size of the peak matmul (default 3072 on "
                   "the CPU, 2048 with --quick, 8192 on the GPU)")
    p.add_argument("--torch-threads", type=int, default=0,
                   help="torch.set_num_threads (default 0: the core count)")
    p.add_argument("--sweep-samples", type=int, help="training samples of the 16-model "
                   "comparison (default 4000)")
    p.add_argument("--no-sweep", action="store_true", help="skip the 16-model comparison")
    p.add_argument("--json", type=Path, help="write everything measured to this file")
    p.add_argument("--results", type=Path, help="regenerate this markdown file's block")
    args = p.parse_args(argv)
    quick = args.quick
    for name, full, small in (("samples", 10_000, 2048), ("reps", 5, 2),
                              ("seconds", 1.0, 0.15), ("gate_steps", 30, 10),
                              ("sweep_samples", 4000, 1000)):
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    for opt, known in (("workloads", peers.WORKLOADS), ("peers", peers.PEERS)):
        names = [n.strip() for n in getattr(args, opt).split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown:
            p.error(f"--{opt}: unknown {unknown}; known: {list(known)}")
        setattr(args, opt, names)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cuda" if args.device == "gpu" else "cpu"
    if args.device == "gpu":
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"  # several JAX workers share the GPU
        if args.dtype == "float32":  # float32 means float32: no TF32 (PyTorch's default too)
            env["JAX_DEFAULT_MATMUL_PRECISION"] = "highest"
    os.environ.update(env)
    config = peers.RunConfig(device=args.device, dtype=args.dtype,
                             torch_threads=args.torch_threads)
    started = time.perf_counter()
    report = {
        "machine": machine_info(config),
        "config": {"command": " ".join(["python bench/suite.py", *sys.argv[1:]]),
                   "samples": args.samples, "reps": args.reps, "seconds": args.seconds,
                   "gate_steps": args.gate_steps, "workloads": args.workloads,
                   "peers": args.peers, "learning_rate": config.learning_rate,
                   "torch_threads": args.torch_threads or peers.num_cores()},
    }
    _log("matmul peak")
    n = args.matmul_n or (8192 if args.device == "gpu" else 2048 if args.quick else 3072)
    report["matmul"] = matmul_peak(config, n, 3 if args.quick else 5, env)
    report["workloads"] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        for w in args.workloads:
            _log(f"workload {w}")
            report["workloads"][w] = run_workload(w, args.peers, config, args, env, tmpdir)
            if args.json:  # partial results survive a run that is cut short
                args.json.write_text(json.dumps(report, indent=1))
        if "W1" in report["workloads"]:
            _log("first step with the compilation cache")
            report["cached_first_step"] = measure_cached_first_step(
                args, config, env, tmpdir, report["workloads"]["W1"])
    _log("sweep")
    report["sweep"] = measure_sweep(args, env) if not args.no_sweep else {
        "measured": False, "note": "not measured (--no-sweep)"}
    report["targets"] = targets(report)
    report["machine"]["loadavg_end"] = _loadavg()
    report["wall_s"] = time.perf_counter() - started

    text = render(report)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if args.results:
        write_results(args.results, text, f"{args.device}-{args.dtype}")

    failed = [f"{w}/{n}: {r['gate']['first_failure']}"
              for w, wres in report["workloads"].items() for n, r in wres["peers"].items()
              if r.get("gate") and not r["gate"]["passed"]]
    if failed:
        print("CORRECTNESS GATE FAILED (loss curves disagree with the float64 reference):\n  "
              + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "--sweep-worker":
        sweep_worker_main(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "--matmul-worker":
        matmul_worker_main(sys.argv[2])
    else:
        sys.exit(main())
