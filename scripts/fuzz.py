"""A longer fuzzing campaign than CI's: N mutated models, each converted in-process.

Prints how many converted, how many got a typed error, how many raised anything else
(uncaught: a bug) and how many ran past the time limit (hang), with one example of each
distinct uncaught exception. Exits 1 when there was any uncaught exception or hang.

    python scripts/fuzz.py --cases 5000 --seed 0 --timeout 10
"""
from __future__ import annotations

import argparse
import collections
import logging
import random
import sys
import time
import traceback
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import onnxruntime  # noqa: E402
import torch  # noqa: E402

from fuzz_mutations import MUTATIONS, Hang, run_case  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0, help="first case seed; case i uses seed + i")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per case before it counts as a hang")
    parser.add_argument("--minutes", type=float, help="stop after this long even if cases remain")
    args = parser.parse_args()
    torch.set_num_threads(1)
    onnxruntime.set_default_logger_severity(4)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")

    counts: collections.Counter[str] = collections.Counter()
    by_mutation: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    bugs: dict[tuple, tuple] = {}
    started = time.time()
    for case in range(args.cases):
        if args.minutes and time.time() - started > 60 * args.minutes:
            break
        seed = args.seed + case
        rng = random.Random(seed * 7919)
        kinds = [rng.choice(MUTATIONS) for _ in range(rng.randint(1, 3))]
        try:
            outcome = run_case(seed, kinds, args.timeout)
        except Hang:
            outcome = "hang"
            bugs.setdefault(("hang",), (seed, kinds, f"over {args.timeout} s"))
        except Exception as error:  # noqa: BLE001 - that is what we are counting
            outcome = "uncaught"
            frame = traceback.extract_tb(error.__traceback__)[-1]
            key = (type(error).__name__, Path(frame.filename).name, frame.lineno)
            bugs.setdefault(key, (seed, kinds, str(error).splitlines()[0][:160] if str(error) else ""))
        counts[outcome] += 1
        for kind in set(kinds):
            by_mutation[kind][outcome] += 1
    total = sum(counts.values())
    print(f"cases: {total} in {time.time() - started:.0f} s (seeds {args.seed}..{args.seed + total - 1})")
    for outcome in ("ok", "typed", "uncaught", "hang"):
        print(f"  {outcome:9s} {counts[outcome]}")
    print("per mutation (ok / typed / uncaught / hang):")
    for kind in sorted(by_mutation):
        c = by_mutation[kind]
        print(f"  {kind:20s} {c['ok']:5d} {c['typed']:5d} {c['uncaught']:5d} {c['hang']:5d}")
    for key, (seed, kinds, message) in bugs.items():
        print(f"BUG {key}: seed {seed} {kinds}: {message}")
    return 1 if counts["uncaught"] or counts["hang"] else 0


if __name__ == "__main__":
    sys.exit(main())
