"""The default design's layout at full scale, as GDSII and as OASIS: written, read back with
gdstk, every cell and disc counted.

The default design (4 mm metasurface, 8 signed 7×7 kernels on 16 sub-optics of 802² phase pixels
of 4 × 4 meta-atoms: ≈ 1.6·10⁸ pillars) is inverse-designed from the shipped example run's
kernel weights for a few steps (the layout's size does not depend on how well it converged),
then written in each format and read back: one cell per sub-optic, one disc per pillar the radius
maps ask for, no disc wider than the lattice allows. Records, per format, the file's bytes, the
seconds to write and to read it, and the discs (the suite checks the same on smaller layouts;
this run is too long for it). Formats are written one after another in this process, so their
times compare (the machine is shared: read them as ratios).

    python bench/layout_export.py

Writes bench/results/layout_export.json: ``rows`` of ``{format, bytes, seconds, read_seconds,
discs, checks}``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onn_core.design import Design  # noqa: E402
from onn_core.fabrication.gds import (  # noqa: E402
    expected_disc_count,
    read_gds_summary,
    write_metasurface_gds,
    write_metasurface_oas,
)
from onn_core.fabrication.inverse_design import InverseDesignSettings, inverse_design  # noqa: E402
from onn_core.training.catalog import EXAMPLE_RUN  # noqa: E402
from onn_core.training.run import build_run_model, load_run  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "layout_export.json"
# format → (file name, writer): GDSII plain, GDSII gzip-compressed (what shops took before OASIS), OASIS
FORMATS = {"gds": ("default.gds", write_metasurface_gds), "gds.gz": ("default.gds.gz", write_metasurface_gds),
           "oas": ("default.oas", write_metasurface_oas)}  # fmt: skip


def main() -> None:
    run = load_run(EXAMPLE_RUN)
    design = Design()
    model = build_run_model(run.config, design)  # the example's 8 kernels fit the default layout too
    model.load_state_dict(run.model.state_dict())
    started = time.perf_counter()
    metasurface = inverse_design(model, design, InverseDesignSettings(iterations=3))
    design_seconds = time.perf_counter() - started
    disc_radius = metasurface.disc_radius()
    expected = expected_disc_count(disc_radius, metasurface.phase_pixel, design)
    rows = []
    for form, (name, write) in FORMATS.items():
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            started = time.perf_counter()
            written = write(path, design, disc_radius, metasurface.phase_pixel)
            seconds = time.perf_counter() - started
            size = path.stat().st_size
            started = time.perf_counter()
            back = read_gds_summary(path)
            read_seconds = time.perf_counter() - started
        checks = {
            "one_cell_per_sub_optic": len(back["sub_optic_cells"]) == written.sub_optic_cells == design.sub_optic_count,
            "one_disc_per_pillar": back["discs"] == written.discs == expected,
            "discs_within_the_lattice": max(back["disc_radii_m"]) <= design.meta_atom_pitch / 2,
        }
        rows.append({"format": form, "bytes": size, "seconds": round(seconds, 2),
                     "read_seconds": round(read_seconds, 2), "discs": back["discs"], "checks": checks})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    payload = {
        "command": "python bench/layout_export.py",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "hardware": "CPU, 2 cores",
        "design": design.to_dict(),
        "sub_optics": design.sub_optic_count,
        "phase_pixels_per_side": int(metasurface.groups[0].radius_m.shape[-1]),
        "min_correlation": metasurface.summary()["min_correlation"],
        "inverse_design_s": round(design_seconds, 1),
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    failed = {row["format"]: row["checks"] for row in rows if not all(row["checks"].values())}
    if failed:
        sys.exit(f"a full-scale layout failed a check: {failed}")


if __name__ == "__main__":
    main()
