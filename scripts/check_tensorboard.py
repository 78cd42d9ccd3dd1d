#!/usr/bin/env python3
"""Loads Quill's TensorBoard event files with TensorBoard's own reader and prints the scalars.

Proves that the event files written by crates/plot (plot::tensorboard::EventWriter) are what
TensorBoard expects: TFRecord framing with masked CRC-32C, a file_version record, and scalar
summaries. Needs `pip install tensorboard`; CI does not run it.

    cargo run --release -p quill-plot --example demo_runs -- /tmp/demo
    python3 scripts/check_tensorboard.py /tmp/demo/small [--expect-tag loss/train ...]

Exits non-zero when a folder has no event file, no scalars, or lacks an expected tag.
"""

import argparse
import glob
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", help="run folders holding events.out.tfevents.* files")
    parser.add_argument("--expect-tag", action="append", default=[], help="a scalar tag that must be present")
    parser.add_argument("--show", type=int, default=3, help="values to print at each end of a series")
    args = parser.parse_args()

    try:
        from tensorboard.backend.event_processing import event_accumulator
    except ImportError:
        print("tensorboard is not installed: pip install tensorboard", file=sys.stderr)
        return 2

    ok = True
    for run_dir in args.run_dirs:
        files = sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*")))
        if not files:
            print(f"{run_dir}: no events.out.tfevents.* file", file=sys.stderr)
            ok = False
            continue
        # size_guidance 0 = keep every event, so the counts below are the file's.
        accumulator = event_accumulator.EventAccumulator(run_dir, size_guidance={event_accumulator.SCALARS: 0})
        accumulator.Reload()
        tags = accumulator.Tags().get("scalars", [])
        print(f"{run_dir}: {len(files)} event file(s), scalar tags {tags}")
        if not tags:
            print(f"{run_dir}: TensorBoard found no scalars", file=sys.stderr)
            ok = False
        for tag in tags:
            events = accumulator.Scalars(tag)
            shown = events if len(events) <= 2 * args.show else events[: args.show] + events[-args.show :]
            values = ", ".join(f"{e.step}:{e.value:.4f}" for e in shown)
            gap = "" if len(events) <= 2 * args.show else " ..."
            print(f"  {tag}: {len(events)} values, steps {events[0].step}..{events[-1].step}  [{values}{gap}]")
        for tag in args.expect_tag:
            if tag not in tags:
                print(f"{run_dir}: expected scalar tag {tag!r}, found {tags}", file=sys.stderr)
                ok = False
    print("TensorBoard loaded every file" if ok else "FAILED", file=sys.stderr if not ok else sys.stdout)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
