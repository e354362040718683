"""GPU check of the ONNX export (one model per run; scripts/gpu_check.sh runs it per model with a timeout).

For a random-weight open_clip model on the GPU: export the base model and a synthetic edit (EditedCLIP) in
fp32 and fp16, check each file against torch (fp32 reference, TF32 off) with onnxruntime's CUDA and
TensorRT providers when this onnxruntime has them (else with the CPU provider, and says so), and time
torch eager and onnxruntime on the GPU. Prints as it goes; every step catches its own failure and the
run goes on; results also go to --json.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import onnxruntime as ort
import torch

import editclip
from editclip._bench import measure
from editclip.commands._bench_export import synthetic_edit
from editclip.edited import EditedCLIP, ImageEncoder
from editclip.export import OnnxImageEncoder, check_parity, export_onnx

RESULTS: list[dict[str, Any]] = []
JSON_PATH: list[Path] = []  # where record() appends each result as it comes (set from --json)


class StepTimeout(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise StepTimeout()


def step(name: str, seconds: int, fn: Callable[[], Any]) -> Any:
    """Run one step with a time limit (checked whenever Python runs); print and record its outcome."""
    start = time.perf_counter()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(seconds)
    try:
        value = fn()
        status = "ok"
    except StepTimeout:
        value, status = None, f"TIMEOUT after {seconds} s"
    except Exception as err:  # report and go on: one failing step must not hide the others
        value, status = None, f"FAILED: {type(err).__name__}: {str(err)[:400]}"
        traceback.print_exc(limit=3)
    finally:
        signal.alarm(0)
    elapsed = time.perf_counter() - start
    print(f"[{elapsed:6.1f} s] {name}: {status}", flush=True)
    _append({"step": name, "status": status, "seconds": round(elapsed, 2)})
    return value


def record(**fields: Any) -> None:
    _append(fields)
    print("    " + ", ".join(f"{k}={v}" for k, v in fields.items()), flush=True)


def _append(row: dict[str, Any]) -> None:
    RESULTS.append(row)
    for path in JSON_PATH:
        with path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")


def gpu_providers() -> list[str]:
    available = ort.get_available_providers()
    return [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]


def provider_options(provider: str, fp16: bool, work: Path) -> list[dict[str, Any]]:
    """TF32 off on CUDA (fp32 parity); TensorRT: fp16 kernels for fp16 files, engines cached in ``work``."""
    cuda = {"use_tf32": "0"}
    if provider == "TensorrtExecutionProvider":
        trt = {"trt_fp16_enable": str(fp16), "trt_engine_cache_enable": "True", "trt_engine_cache_path": str(work)}
        return [trt, cuda]
    return [cuda]


def parity_on(
    path: Path, module: torch.nn.Module, chain: list[str], options: Any, batches: list[int], label: dict[str, Any]
) -> None:
    p = check_parity(path, module, batch_sizes=batches, providers=chain, provider_options=options)
    record(**label, max_abs_diff=f"{p.max_abs_diff:.3g}", min_cosine=f"{p.min_cosine:.7f}", passed=p.passed)


def throughput_on(
    path: Path, chain: list[str], options: Any, images: torch.Tensor, repeats: int, label: dict[str, Any]
) -> None:
    enc = OnnxImageEncoder(path, providers=chain, provider_options=options)
    with torch.no_grad():
        t = measure({"ort": lambda: enc.run_torch(images)}, len(images), images.device, repeats=repeats, warmup=2)[0]
    record(
        **label,
        variant="onnxruntime",
        batch=len(images),
        img_per_s=round(t.throughput, 1),
        ms=round(t.seconds * 1e3, 2),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--work", default="/tmp/editclip-gpu-check")
    parser.add_argument("--batch", type=int, default=64, help="throughput batch size")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--parity-batches", default="1,3,8")
    parser.add_argument("--cpu-parity-batches", default="1,3", help="when no GPU provider is there")
    parser.add_argument("--step-timeout", type=int, default=150)
    parser.add_argument("--json", help="append the results to this JSON-lines file")
    args = parser.parse_args()

    if args.json:
        JSON_PATH.append(Path(args.json))
    work = Path(args.work) / args.model
    work.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    providers = gpu_providers()
    print(
        f"== {args.model}: torch {torch.__version__} ({device}), onnxruntime {ort.__version__} "
        f"{ort.get_available_providers()}",
        flush=True,
    )
    if not providers:
        print(
            "   onnxruntime has no CUDA/TensorRT provider here (the CPU package): parity runs on the CPU "
            "provider; install onnxruntime-gpu for the GPU runs",
            flush=True,
        )
    parity_batches = [int(b) for b in (args.parity_batches if providers else args.cpu_parity_batches).split(",")]

    torch.manual_seed(0)
    bb = step(f"load {args.model} (random weights) on {device}", 120, lambda: editclip.load(args.model, device=device))
    if bb is None:
        return 1
    edited = EditedCLIP(bb.model, synthetic_edit(bb))
    models = {"base": ImageEncoder(bb.model), "edited": ImageEncoder(edited)}
    images = torch.randn(args.batch, 3, *bb.shape.image_size, device=device)

    def torch_timings() -> None:
        variants: dict[str, Callable[[], object]] = {
            "torch fp32 base": lambda: models["base"](images),
            "torch fp32 EditedCLIP": lambda: models["edited"](images),
        }
        if cuda:

            def autocast(m: torch.nn.Module) -> Callable[[], object]:
                def call() -> object:
                    with torch.autocast("cuda", dtype=torch.float16):
                        return m(images)

                return call

            variants |= {
                "torch fp16-autocast base": autocast(models["base"]),
                "torch fp16-autocast EditedCLIP": autocast(models["edited"]),
            }
        with torch.no_grad():
            for t in measure(variants, args.batch, images.device, repeats=args.repeats, warmup=2):
                record(
                    model=args.model,
                    variant=t.name,
                    batch=args.batch,
                    img_per_s=round(t.throughput, 1),
                    ms=round(t.seconds * 1e3, 2),
                )

    step("torch eager throughput", args.step_timeout, torch_timings)

    for kind, precision in (("base", "fp32"), ("edited", "fp32"), ("edited", "fp16"), ("base", "fp16")):
        path = work / f"{kind}-{precision}.onnx"
        export = partial(
            export_onnx, models[kind], path, fp16=precision == "fp16", check=False, metadata={"kind": kind}
        )
        report = step(f"export {kind} {precision}", args.step_timeout, export)
        if report is None:
            continue
        label = {"model": args.model, "kind": kind, "precision": precision}
        record(**label, mib=round(report.size_bytes / 2**20, 1), export_s=round(report.export_seconds, 1))
        for provider in providers or ["CPUExecutionProvider"]:
            chain = list(dict.fromkeys([provider, "CUDAExecutionProvider", "CPUExecutionProvider"]))
            if provider == "CPUExecutionProvider":
                chain, options = ["CPUExecutionProvider"], None
            else:
                options = provider_options(provider, precision == "fp16", work)
            where = {**label, "provider": provider}
            check = partial(parity_on, path, models[kind], chain, options, parity_batches, where)
            step(f"parity {kind} {precision} on {provider}", args.step_timeout, check)
            if provider != "CPUExecutionProvider":
                timing = partial(throughput_on, path, chain, options, images, args.repeats, where)
                step(f"throughput {kind} {precision} on {provider}", args.step_timeout, timing)
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".data").unlink(missing_ok=True)

    failed = [r for r in RESULTS if str(r.get("status", "ok")) != "ok" or r.get("passed") is False]
    print(f"== {args.model}: {len(failed)} failed step(s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
