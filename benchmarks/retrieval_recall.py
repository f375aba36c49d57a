"""Retrieval recall (issue 3): for each query, is a mapping image that observes at
least 30 % of the query's visible 3D points among the top 5 retrieved? Visibility
from a structure map of all the scene's frames. Prints a table, writes JSON.

    python benchmarks/retrieval_recall.py [--descriptor vlad|bow] [--k 5]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vloc.evaluation import markdown_table
from vloc.evaluation.covisibility import retrieval_recall
from vloc.localizers.retrieval import RetrievalMapConfig

from scenes import SCENES, default_data, load_scene, write_results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--descriptor", default="vlad")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--scenes", nargs="*")
    ap.add_argument("--json", type=Path, default=Path("benchmarks/out/retrieval_recall.json"))
    args = ap.parse_args(argv)
    cfg = RetrievalMapConfig(global_descriptor=args.descriptor)
    rows, out = [], []
    for rel, split, _ in SCENES:
        if args.scenes and not any(s in rel for s in args.scenes):
            continue
        t = time.perf_counter()
        r = retrieval_recall(load_scene(args.data, rel), split, args.k, 0.3, cfg, progress=False)
        rows.append({"scene": rel, "split": split, "queries": r.queries, "with a 30 % neighbour": r.answerable,
                     f"recall@{args.k}": f"{100 * r.recall:.0f} %", "target": ">= 95 %",
                     "seconds": round(time.perf_counter() - t, 1)})
        out.append({"scene": rel, "recall": r.recall, "per_query": r.per_query})
        print(rows[-1], file=sys.stderr, flush=True)
    print(markdown_table(rows))
    write_results(args.json, {"config": cfg.to_dict()}, {"scenes": out})
    return 0


if __name__ == "__main__":
    sys.exit(main())
