"""``plexus verify`` over a synthetic cloud (``bench/synthetic.py``): how long the whole
verification takes, and how much it checked. One command, one table:

    .venv/bin/python bench/verify.py [--ports N] [--chassis C]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import synthetic  # noqa: E402
from table import machine, print_table  # noqa: E402

from plexus.tools.fabric import Fabric, Model  # noqa: E402
from plexus.tools.verify import verify  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ports", type=int, default=500)
    p.add_argument("--chassis", type=int, default=48)
    args = p.parse_args()
    cloud = synthetic.generate(ports=args.ports, chassis=args.chassis)
    start = time.perf_counter()
    model = Model(synthetic.snapshot_lists(cloud.objects))
    parsed, cpu = time.perf_counter(), time.process_time()
    result = verify(Fabric(model))
    done, cpu = time.perf_counter(), time.process_time() - cpu
    rows = [("ports in the model", str(len(cloud.objects["ports"]))),
            ("chassis", str(args.chassis)),
            ("model parsed (s)", f"{parsed - start:.2f}"),
            ("verify (s)", f"{done - parsed:.2f}"),
            ("verify CPU (s)", f"{cpu:.2f}"),     # the other engineers' load aside
            ("findings", str(len(result.findings)))]
    rows += [(f"checked: {k}", str(v)) for k, v in result.counts.items()]
    rows.append(("machine", machine()))
    print_table(rows)


if __name__ == "__main__":
    main()
