"""Benchmark of the classical lung mask (`covseg.lungmask.lung_mask`): seconds and peak extra memory to segment the
lungs of a synthetic 300x512x512 study (1 x 0.74 x 0.74 mm) and of a thick-slice 60x512x512 one (5 mm slices), with
and without an infiltrate passed in, plus Dice per lung against the phantom's own lung masks (synthetic data: a
check that the timed run did the work, not an accuracy figure for real CT). Target: <= 10 s per 300x512x512 study on
2 CPU cores.

Run: `.venv/bin/python bench/bench_lungmask.py` (about a minute; writes the section 'Lung mask' of BENCHMARKS.md).
`--quick`: small phantoms, one run each, a correctness check in seconds, no write. `--no-write`: print only."""
import sys, time, statistics, tracemalloc
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import machine, replace_section
from covseg.volume import Volume
from covseg.phantom import make_phantom
from covseg.synth import _geometry
from covseg.metrics import dice
from covseg.lungmask import lung_mask, lung_steps

HEAD = "## Lung mask (`bench/bench_lungmask.py`)"
FULL = [((300, 512, 512), (1.0, 380/512, 380/512)), ((60, 512, 512), (5.0, 380/512, 380/512))]
QUICK = [((48, 128, 128), None), ((96, 256, 256), None)]

def measure(shape, spacing, reps:int, seed:int=1)->list:
    "Rows (what, seconds, peak MiB, Dice left/right) for one phantom: plain and with its infection as the infiltrate."
    p = make_phantom(shape, spacing, seed=seed, pleural_consolidation=True)
    vol = Volume(np.round(p.image).astype(np.int16), _geometry(p))       # int16, as read from a NIfTI file
    f = lung_steps(vol).f
    rows = []
    for label, inf in (('plain', None), ('infiltrate=', p.infection)):
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter(); m = lung_mask(vol, infiltrate=inf).array; ts.append(time.perf_counter() - t0)
        tracemalloc.start()
        lung_mask(vol, infiltrate=inf)
        peak = tracemalloc.get_traced_memory()[1]/2**20
        tracemalloc.stop()
        d = [dice(m == k, p.lungs == k) for k in (1, 2)]
        sp = 'x'.join(f"{s:.2f}" for s in p.spacing)
        rows.append((f"{'x'.join(map(str, shape))} ({sp} mm, working blocks {'x'.join(map(str, f))}), {label}",
                     statistics.median(ts), peak, d))
    return rows

def main(quick:bool=False)->list:
    cases, reps = (QUICK, 1) if quick else (FULL, 3)
    return [r for shape, sp in cases for r in measure(shape, sp, reps)]

def write_section(rows):
    replace_section(HEAD, [f"Measured {time.strftime('%Y-%m-%d')} on: {machine()}. Synthetic phantoms (`covseg.phantom`, "
                           "int16 HU in memory, with a pleural consolidation); median of 3 runs; peak = largest extra memory "
                           "numpy allocated during one call (tracemalloc). Dice against the phantom's lung masks (synthetic).", '',
                           '| study | seconds | peak extra memory | Dice left / right (synthetic) | target |', '|---|---|---|---|---|']
                   + [f"| {w} | {t:.2f} s | {m:.0f} MiB | {d[0]:.4f} / {d[1]:.4f} | {'≤ 10 s' if w.startswith('300x') else '—'} |"
                      for w, t, m, d in rows])

if __name__ == '__main__':
    quick = '--quick' in sys.argv
    rows = main(quick)
    for w, t, m, d in rows: print(f"{w}: {t:.2f} s, peak {m:.0f} MiB, Dice {d[0]:.4f} / {d[1]:.4f}")
    assert all(min(d) >= 0.95 for *_, d in rows), "Dice below 0.95 on a phantom: the lung mask is broken"
    if not quick and '--no-write' not in sys.argv: write_section(rows)
