"""Synthesis throughput: the quick preset end to end, and candidates validated per second batched (labkit's way,
many candidates per sandbox program) vs one program per candidate (the peer), on the same candidates.

    .venv/bin/python bench/synth.py [--preset quick] [--sample 400] [--repeats 3]

The end-to-end run reports wall time and its own validated/s (sandbox time only). The comparison draws `sample`
candidates of the in-domain kind, then validates them both ways; repeats are interleaved and medians compared.
Writes runs/bench/synth.json.
"""
import argparse
import dataclasses
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from labkit import atomic, compose, config, synth, validation


def candidates(cfg, n):
    specs = atomic.library(cfg.seed, cfg.n_tests)
    graph = compose.Graph.build(specs)
    rng = random.Random(cfg.seed)
    rule = compose.Rule(tuple(range(2, cfg.max_depth + 1)))
    chains = []
    while len(chains) < n:
        chain = compose.walk(graph, rule, rng)
        if chain and chain not in chains:
            chains.append(chain)
    inputs = {s.name: compose.test_inputs(s, cfg.seed, cfg.n_tests) for s in specs}
    taken: set = set()
    cands = [compose.make_candidate(graph, c, cfg, rng, taken) for c in chains]
    return graph, cands, inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--sample", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        cfg = config.resolve(synth.SynthConfig, args.preset, {"out_dir": tmp})
        start = time.perf_counter()
        manifest = synth.synthesize(cfg, progress=False)
        wall = time.perf_counter() - start
    end_to_end = {"preset": args.preset, "wall_s": round(wall, 2),
                  "candidates_validated": manifest["candidates_validated"],
                  "validated_per_s": round(manifest["candidates_validated"] / manifest["timing"]["validate_seconds"], 1),
                  "counts": manifest["counts"]}
    print(json.dumps(end_to_end))

    graph, cands, inputs = candidates(cfg, args.sample)
    sides = {"batched": cfg, "one_per_program": dataclasses.replace(cfg, batch_size=1)}
    times: dict[str, list[float]] = {k: [] for k in sides}
    reasons = {}
    for _ in range(args.repeats):
        for name, side in sides.items():   # interleaved, so load on the machine hits both alike
            t0 = time.perf_counter()
            results = validation.validate(graph, cands, inputs, side)
            times[name].append(time.perf_counter() - t0)
            reasons[name] = [r[0] for r in results]
    assert reasons["batched"] == reasons["one_per_program"], "the two ways disagree on some candidate"
    rate = {k: args.sample / statistics.median(v) for k, v in times.items()}
    result = {"end_to_end": end_to_end, "sample": args.sample, "repeats": args.repeats,
              "seconds": {k: [round(t, 3) for t in v] for k, v in times.items()},
              "validated_per_s": {k: round(v, 1) for k, v in rate.items()},
              "speedup_batched": round(rate["batched"] / rate["one_per_program"], 2),
              "agreement": True, "workers": os.cpu_count()}
    print(json.dumps(result, indent=1))
    out = Path("runs/bench/synth.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
