"""Verification benchmark: the fused Triton kernel against its torch twin (and FlashInfer).

Grid: batch B in (1, 8, 64) x draft tokens G in (4, 8) x vocabulary V in (32000, 128256), for
probability inputs (``hierspec.verify``) and logit inputs (``hierspec.verify_logits``, T = 1).
Device: the CUDA GPU when there is one, the CPU otherwise (one thread), recorded by name.

Per cell, on the same device and the same inputs and noise:
    twin      ``verify_torch`` (noise drawn beforehand), the reference and CPU path;
    triton    ``verify_triton`` (noise drawn beforehand), GPU only: on CPU Triton runs only in its
              Python interpreter, which is not a performance measurement, so it is not timed;
    verify()  the public call end to end (input checks, noise from a generator, dispatch), and
              again with ``validate=False`` (noise and dispatch only, as the engine calls it);
    flashinfer ``flashinfer.sampling.chain_speculative_sampling`` (probabilities), if importable.
Timings: median (and min / max) of repeated runs; on GPU ``triton.testing.do_bench``, which flushes
the L2 cache between runs.

Bytes (the GB/s numerator) are those the fused algorithm must move, from each row's outcome
``k = num_accepted``: the target row k, the draft row k (if k < G) and the noise row
(float32) for the sampling pass, plus for logits the k + 1 target rows scanned for their
max / sum, plus O(G) scalars and the outputs written. The same numerator is used for every
implementation (useful bytes per second). GPU bandwidth is compared with the card's nominal peak
and with a measured device-to-device copy.

    python bench/verify.py [--quick] [--repeats N] [--dtype fp32|fp16|bf16]
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from harness import RESULTS, write_report  # noqa: E402

import hierspec  # noqa: E402
from hierspec.io import machine_info  # noqa: E402
from hierspec.kernels import draw_verify_noise, verify_torch  # noqa: E402

BATCH_SIZES = (1, 8, 64)
NUM_DRAFT_TOKENS = (4, 8)
VOCAB_SIZES = (32000, 128256)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Nominal memory bandwidth (bytes/s) by device-name substring (vendor data sheets).
NOMINAL_BANDWIDTH = {
    "H200": 4.8e12,
    "H100 PCIe": 2.0e12,
    "H100": 3.35e12,
    "A100-SXM4-80GB": 2.039e12,
    "A100": 1.555e12,
    "L40S": 864e9,
    "L4": 300e9,
    "A10G": 600e9,
}


def device_description(device: torch.device, machine: dict[str, object]) -> dict[str, object]:
    """The device the kernels ran on (the CPU as :func:`hierspec.io.machine_info` names it)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        nominal = next((bw for key, bw in NOMINAL_BANDWIDTH.items() if key in name), None)
        return {"type": "cuda", "name": name, "nominal_bandwidth_bytes_per_s": nominal}
    return {
        "type": "cpu",
        "name": machine["cpu"],
        "cpu_count": machine["logical_cores"],
        "threads": torch.get_num_threads(),
    }


def slug(description: dict[str, object]) -> str:
    if description["type"] == "cpu":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", str(description["name"]).lower()).strip("-")


def time_call(
    function: Callable[[], object], device: torch.device, repeats: int
) -> dict[str, float]:
    """Median / min / max milliseconds of ``function``."""
    if device.type == "cuda":
        import triton.testing

        median, low, high = triton.testing.do_bench(function, quantiles=[0.5, 0.0, 1.0])
        return {"median_ms": median, "min_ms": low, "max_ms": high}
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times)}


def copy_bandwidth(device: torch.device, repeats: int) -> float:
    """Measured device copy bandwidth, bytes/s (read + write)."""
    num_bytes = (1 << 30) if device.type == "cuda" else (1 << 28)
    source = torch.ones(num_bytes // 4, dtype=torch.float32, device=device)
    destination = torch.empty_like(source)
    timing = time_call(lambda: destination.copy_(source), device, repeats)
    return 2 * num_bytes / (timing["median_ms"] * 1e-3)


def make_inputs(batch, num_draft_tokens, vocab, dtype, device, seed):
    """Partly agreeing draft / target distributions; draft tokens drawn from the draft."""
    gen = torch.Generator(device=device).manual_seed(seed)
    draft_logits = 2.0 * torch.randn(batch, num_draft_tokens, vocab, generator=gen, device=device)
    target_logits = torch.randn(batch, num_draft_tokens + 1, vocab, generator=gen, device=device)
    target_logits[:, :num_draft_tokens] += draft_logits
    draft_probs = torch.softmax(draft_logits, dim=-1)
    del draft_logits
    draft_token_ids = torch.multinomial(draft_probs.reshape(-1, vocab), 1, generator=gen)
    draft_token_ids = draft_token_ids.reshape(batch, num_draft_tokens)
    target_probs = torch.softmax(target_logits, dim=-1).to(dtype)
    return draft_token_ids, draft_probs.to(dtype), target_probs, target_logits.to(dtype)


def useful_bytes(num_accepted, num_draft_tokens, vocab, element_size, logits) -> int:
    """Bytes the fused algorithm reads and writes, given each row's outcome (see the docstring)."""
    total = 0
    for accepted in num_accepted.tolist():
        visited = min(accepted + 1, num_draft_tokens)  # drafts tested
        total += visited * (8 + 8 + 2 * element_size)  # id, uniform, p(x), q(x)
        total += vocab * element_size  # target row k (sampling pass)
        total += vocab * element_size if accepted < num_draft_tokens else 0  # draft row k
        total += vocab * 4  # exponentials row
        if logits:
            total += (accepted + 1) * vocab * element_size  # max / sum passes
        total += (num_draft_tokens + 1) * 8 + 8  # outputs
    return total


def flashinfer_call(draft_token_ids, draft_probs, target_probs):
    """A zero-argument call of FlashInfer's chain_speculative_sampling, or the reason why not."""
    try:
        from flashinfer.sampling import chain_speculative_sampling
    except Exception as error:
        return None, f"not importable: {type(error).__name__}: {error}"
    ids = draft_token_ids.int()
    return (lambda: chain_speculative_sampling(draft_probs, ids, target_probs)), None


def triton_status(device: torch.device) -> tuple[bool, str]:
    if device.type != "cuda":
        return False, (
            "no CUDA device: on CPU Triton runs only in its Python interpreter "
            "(TRITON_INTERPRET=1), which executes the kernel in Python / NumPy and is not a "
            "performance measurement"
        )
    try:
        import triton  # noqa: F401
    except ImportError as error:
        return False, f"triton not importable: {error}"
    return True, "compiled"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="V = 32000 only")
    parser.add_argument("--repeats", type=int, default=5, help="CPU repeats per timing")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args()

    if not torch.cuda.is_available():
        torch.set_num_threads(1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = DTYPES[args.dtype]
    machine = machine_info()
    description = device_description(device, machine)
    use_triton, triton_reason = triton_status(device)
    launcher = None
    if use_triton:
        from hierspec.kernels.verify_triton import verify_triton as launcher
    measured_copy = copy_bandwidth(device, args.repeats)
    nominal = description.get("nominal_bandwidth_bytes_per_s")
    print(
        f"device: {description['name']} ({device.type}); dtype {args.dtype}; "
        f"measured copy bandwidth {measured_copy / 1e9:.1f} GB/s"
        + (f"; nominal {nominal / 1e9:.0f} GB/s" if nominal else "")
    )
    print(f"triton: {triton_reason}")

    flashinfer_reason = "not run: FlashInfer kernels need a CUDA device"
    rows = []
    header = (
        f"{'input':>6} {'B':>3} {'G':>2} {'V':>6} {'acc':>5} {'twin ms':>9} {'GB/s':>7} "
        f"{'triton ms':>9} {'GB/s':>7} {'%peak':>6} {'x twin':>7} {'verify() ms':>11} "
        f"{'unchecked':>9} "
        f"{'flashinfer ms':>13}"
    )
    print(header)
    vocab_sizes = VOCAB_SIZES[:1] if args.quick else VOCAB_SIZES
    for vocab in vocab_sizes:
        for num_draft_tokens in NUM_DRAFT_TOKENS:
            for batch in BATCH_SIZES:
                inputs = make_inputs(
                    batch, num_draft_tokens, vocab, dtype, device, seed=batch + vocab
                )
                draft_token_ids, draft_probs, target_probs, target_logits = inputs
                noise = draw_verify_noise(
                    batch,
                    num_draft_tokens,
                    vocab,
                    torch.Generator(device=device).manual_seed(1),
                    device,
                )
                for variant, target, temperature in (
                    ("probs", target_probs, None),
                    ("logits", target_logits, 1.0),
                ):
                    row = run_cell(
                        variant,
                        draft_token_ids,
                        draft_probs,
                        target,
                        temperature,
                        noise,
                        device,
                        args.repeats,
                        launcher,
                    )
                    row.update(batch=batch, num_draft_tokens=num_draft_tokens, vocab=vocab)
                    if variant == "probs" and device.type == "cuda":
                        call, flashinfer_reason = flashinfer_call(
                            draft_token_ids, draft_probs, target
                        )
                        if call is not None:
                            try:
                                row["flashinfer"] = time_call(call, device, args.repeats)
                                flashinfer_reason = "timed"
                            except Exception as error:
                                flashinfer_reason = f"call failed: {type(error).__name__}: {error}"
                    add_bandwidth(row, measured_copy, nominal)
                    rows.append(row)
                    print(format_row(row))
                del inputs, draft_token_ids, draft_probs, target_probs, target_logits, noise

    result = {
        "benchmark": "verify",
        "device": description,
        "dtype": args.dtype,
        "measured_copy_bandwidth_bytes_per_s": measured_copy,
        "triton": {"available": use_triton, "reason": triton_reason},
        "flashinfer": flashinfer_reason,
        "byte_model": "bytes the fused algorithm moves given each row's num_accepted (docstring)",
        "timing": (
            "do_bench median, L2 flushed"
            if device.type == "cuda"
            else f"median of {args.repeats} after one warm-up, {torch.get_num_threads()} thread(s)"
        ),
        "versions": {
            **machine["versions"],
            "triton": _version("triton"),
            "flashinfer": _version("flashinfer"),
        },
        "load_average_start": machine["load_average"],
        "machine": machine,
        "rows": rows,
    }
    write_report(args.output_dir / f"verify-{slug(description)}.json", result)
    return 0


def run_cell(
    variant, draft_token_ids, draft_probs, target, temperature, noise, device, repeats, launcher
):
    def twin():
        return verify_torch(draft_token_ids, draft_probs, target, noise, temperature=temperature)

    def public(validate=True):
        generator = torch.Generator(device=device).manual_seed(2)
        if temperature is None:
            return hierspec.verify(
                draft_token_ids, draft_probs, target, generator, validate=validate
            )
        return hierspec.verify_logits(
            draft_token_ids, draft_probs, target, temperature, generator, validate=validate
        )

    _, num_accepted = twin()
    num_draft_tokens = draft_token_ids.shape[1]
    row: dict[str, object] = {
        "input": variant,
        "mean_num_accepted": float(num_accepted.double().mean()),
        "bytes": useful_bytes(
            num_accepted,
            num_draft_tokens,
            target.shape[-1],
            target.element_size(),
            variant == "logits",
        ),
        "twin": time_call(twin, device, repeats),
        "verify": time_call(public, device, repeats),
        "verify_unchecked": time_call(lambda: public(validate=False), device, repeats),
    }
    if launcher is not None:

        def kernel():
            return launcher(draft_token_ids, draft_probs, target, noise, temperature=temperature)

        expected, got = twin(), kernel()
        row["triton_equals_twin"] = bool(
            torch.equal(expected[0], got[0]) and torch.equal(expected[1], got[1])
        )
        row["triton"] = time_call(kernel, device, repeats)
    return row


def add_bandwidth(row, measured_copy, nominal) -> None:
    for name in ("twin", "triton", "flashinfer"):
        if name in row:
            seconds = row[name]["median_ms"] * 1e-3
            row[name]["gb_per_s"] = row["bytes"] / seconds / 1e9
            row[name]["fraction_of_copy_bandwidth"] = row["bytes"] / seconds / measured_copy
            if nominal:
                row[name]["fraction_of_nominal_bandwidth"] = row["bytes"] / seconds / nominal
    if "triton" in row:
        row["triton_speedup_over_twin"] = row["twin"]["median_ms"] / row["triton"]["median_ms"]


def format_row(row) -> str:
    def ms(name):
        return f"{row[name]['median_ms']:.3f}" if name in row else "-"

    def gbps(name):
        return f"{row[name]['gb_per_s']:.1f}" if name in row else "-"

    peak = "-"
    if "triton" in row and "fraction_of_nominal_bandwidth" in row["triton"]:
        peak = f"{100 * row['triton']['fraction_of_nominal_bandwidth']:.0f}"
    speedup = f"{row['triton_speedup_over_twin']:.1f}" if "triton_speedup_over_twin" in row else "-"
    return (
        f"{row['input']:>6} {row['batch']:>3} {row['num_draft_tokens']:>2} {row['vocab']:>6} "
        f"{row['mean_num_accepted']:>5.2f} {ms('twin'):>9} {gbps('twin'):>7} {ms('triton'):>9} "
        f"{gbps('triton'):>7} {peak:>6} {speedup:>7} {ms('verify'):>11} "
        f"{ms('verify_unchecked'):>9} "
        f"{ms('flashinfer'):>13}"
    )


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
