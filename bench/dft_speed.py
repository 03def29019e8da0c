"""Generation speed of a batch folder: median seconds per material by cell size and spin.

Usage: ``.venv/bin/python bench/dft_speed.py [DIR]`` (default ``data-gen/gpaw-v1``). Reads the
timings recorded in each result JSON (wall time and, where recorded, the worker's CPU time, which
is what a dedicated core would take when the machine is shared) and the failures file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def speed_table(out_dir: Path) -> str:
    """Markdown table of median wall/CPU seconds per material grouped by (atoms, spin, cubic)."""
    groups: dict[tuple[int, bool, bool], list[dict]] = defaultdict(list)
    rescued: list[str] = []
    for path in sorted((out_dir / "results").glob("*.json")):
        rec = json.loads(path.read_text())
        if rec.get("kind", "crystal") != "crystal":
            continue
        if rec.get("scf_fallbacks"):
            rescued.append(f"{rec['id']} ({rec['scf_fallbacks']} SCFs, {rec['timing']['total_s']:.0f} s)")
        groups[(rec["natoms"], rec["spin_polarized"], rec.get("elastic") is not None)].append(rec["timing"])
    lines = ["| atoms | spin | elastic constants computed | materials | median wall (s) | median CPU (s) | median EOS / SCF / "
             "elastic wall (s) |", "|---|---|---|---|---|---|---|"]
    for (natoms, spin, cubic), timings in sorted(groups.items()):
        wall = statistics.median(t["total_s"] for t in timings)
        cpu = [t["cpu_s"] for t in timings if "cpu_s" in t]
        parts = "/".join(
            f"{statistics.median(t.get(k, 0.0) for t in timings):.0f}" for k in ("eos_s", "scf_s", "elastic_s")
        )
        cpu_text = f"{statistics.median(cpu):.0f}" if cpu else "–"
        lines.append(f"| {natoms} | {'yes' if spin else 'no'} | {'yes' if cubic else 'no'} | {len(timings)} | "
                     f"{wall:.0f} | {cpu_text} | {parts} |")
    failures = json.loads((out_dir / "failures.json").read_text()) if (out_dir / "failures.json").exists() else {}
    n_done = sum(len(v) for v in groups.values())
    lines.append("")
    lines.append(f"{n_done} crystals done, {len(failures)} failed.")
    if rescued:
        lines.append(f"Converged only with the fallback mixer (protocol revision 5): {', '.join(rescued)}.")
    return "\n".join(lines)


def main() -> int:
    """Print the speed table of a batch folder."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir", nargs="?", default="data-gen/gpaw-v1", type=Path)
    print(speed_table(parser.parse_args().out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
