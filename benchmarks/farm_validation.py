"""What a farm job on labelled data records: the digits CNN (trained here) submitted for fp32 and
int8 with its held-out quarter as validation data and training rows as calibration data, on an
embedded farm whose tasks run in this process; then ``orchestrate compare`` of the two.

    python benchmarks/farm_validation.py [--runs 200]

Prints, per artifact, the gate, task accuracy, compiled and eager p50 latency, speedup and peak
RSS the worker recorded (the ``(performance)`` validation rows), and the submit-time cost of
checking a data file against the model (the refusal of a bad file, nothing stored).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from benchmarks.zoo import digits_cnn  # noqa: E402
from orchestrator import services  # noqa: E402
from orchestrator.client import Client  # noqa: E402
from orchestrator.routing import Target  # noqa: E402
from orchestrator.services import Farm, InvalidRequestError  # noqa: E402
from orchestrator.testing import embedded_settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="timed calls per latency (validation.latency_runs)")
    args = parser.parse_args()
    from sklearn.datasets import load_digits

    case = digits_cnn()
    assert case.held_out is not None
    images, labels = case.held_out
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        batch = torch.export.Dim("batch", min=1, max=64)
        program = torch.export.export(case.module, (images[:4],), dynamic_shapes={"x": {0: batch}})
        model = folder / "digits.pt2"
        torch.export.save(program, model)
        held_out = folder / "held_out.npz"
        np.savez(held_out, x=images.numpy(), labels=labels.numpy())
        calibration = folder / "calibration.safetensors"
        save_file({"x": torch.from_numpy((load_digits().images[:512] / 16.0).astype("float32")[:, None])}, str(calibration))
        farm = Farm(embedded_settings(folder / "home"), eager=True)
        spec = {"validation": {"latency_warmup": 10, "latency_runs": args.runs}}
        for precision in ("fp32", "int8"):
            started = time.perf_counter()
            (job,) = services.submit(
                farm, model, [Target("x86_64")], services.resolve_spec(spec, precision=precision), name="digits",
                validation_data=held_out, calibration_data=calibration if precision == "int8" else None,
            ).jobs
            print(f"{precision}: job {job.state} in {time.perf_counter() - started:.1f} s ({job.error_message or 'ok'})")
        bad = folder / "bad.npz"
        np.savez(bad, x=images.numpy().astype(np.float64))
        started = time.perf_counter()
        try:
            services.submit(farm, model, [Target("x86_64")], services.resolve_spec(spec), validation_data=bad)
        except InvalidRequestError as exc:
            print(f"bad data file refused in {(time.perf_counter() - started) * 1e3:.0f} ms: {exc}")
        print(f"{'precision':9} {'gate':9} {'accuracy':>8} {'p50 ms':>8} {'eager ms':>8} {'speedup':>7} {'peak RSS':>9}")
        for row in Client(farm=farm).compare("digits"):
            print(
                f"{row.precision:9} {row.gate or '-':9} {row.task_accuracy or 0:8.2%} {row.compiled_p50_ms or 0:8.4f} "
                f"{row.eager_p50_ms or 0:8.4f} {row.speedup or 0:6.2f}x {row.peak_rss_mb or 0:6.0f} MiB"
            )


if __name__ == "__main__":
    main()
