"""Benchmark of the metrics (issue: metrics): time of Dice and of the normalised surface Dice (DeepMind's reference
code through `covseg.metrics`) on one 300x512x512 study at 1.0 x 0.7 x 0.7 mm, with where the NSD's time goes.
Target: NSD <= 2 s on 2 CPU cores. Ground truth = a synthetic phantom's infection mask; prediction = that mask
dilated by one voxel and shifted by (1, 3, -2) voxels. Writes its figures into BENCHMARKS.md (section 'Metrics').
Run: `.venv/bin/python bench/bench_metrics.py`; `--quick`: a small volume, checks only, writes nothing."""
import os, sys, time, statistics, cProfile, pstats
import numpy as np
from scipy import ndimage
from bench_data import machine, replace_section
from covseg.phantom import make_phantom
from covseg.metrics import dice, normalized_surface_dice, case_metrics, sdm

FULL = dict(shape=(300, 512, 512), spacing=(1.0, 0.7, 0.7), reps=3)
QUICK = dict(shape=(60, 128, 128), spacing=(5.0, 2.8, 2.8), reps=2)

def make_case(shape, spacing, seed=1):
    "Ground truth (a phantom's infection) and a plausible prediction: dilated by one voxel, shifted by (1, 3, -2) voxels."
    gt = make_phantom(shape, spacing=spacing, seed=seed).infection.astype(bool)
    pred = np.roll(ndimage.binary_dilation(gt), (1, 3, -2), axis=(0, 1, 2))
    return pred, gt

def timed(f, n):
    ts = []
    for _ in range(n):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return ts

def breakdown(pred, gt, spacing)->dict:
    "Seconds of one reference NSD call spent in its parts (cProfile; the profiler adds a little overhead)."
    prof = cProfile.Profile()
    prof.enable(); normalized_surface_dice(pred, gt, spacing); prof.disable()
    st = pstats.Stats(prof).stats
    cum = lambda name: sum(v[3] for k, v in st.items() if k[2] == name)
    parts = {'distance transforms (scipy `distance_transform_edt`, 2 calls)': cum('distance_transform_edt'),
             'neighbour codes (scipy `correlate`, 2 calls)': cum('correlate'),
             "sorting the surfels (covseg's lexsort in place of the reference's pure-Python `sorted`)": cum('_sort_distances_surfels'),
             'bounding box and crop': cum('_compute_bounding_box') + cum('_crop_to_bounding_box')}
    total = cum('normalized_surface_dice')
    parts['everything else (input checks, masks, lookups)'] = total - sum(parts.values())
    return dict(total=total, parts=parts)

def main(shape, spacing, reps):
    t0 = time.perf_counter(); pred, gt = make_case(shape, spacing); t_case = time.perf_counter() - t0
    m = case_metrics(pred, gt, spacing)
    # the wrapper gives the reference's own number (ground truth first, spacing in array order)
    ref = sdm.compute_surface_dice_at_tolerance(sdm.compute_surface_distances(gt, pred, spacing), 3.0)
    assert m['nsd'] == ref, (m['nsd'], ref)
    assert m['dice'] == sdm.compute_dice_coefficient(gt, pred)
    assert 0 < m['nsd'] < 1 and 0 < m['dice'] < 1, m
    lo, hi = np.argwhere(gt | pred).min(0), np.argwhere(gt | pred).max(0)
    sd = sdm.compute_surface_distances(gt, pred, spacing)
    info = dict(shape=shape, spacing=spacing, reps=reps, t_case=t_case, metrics=m, bbox=tuple(int(v) for v in hi - lo + 1),
                surfels=(len(sd['surfel_areas_gt']), len(sd['surfel_areas_pred'])), load=os.getloadavg()[0])
    info['dice_s'] = timed(lambda: dice(pred, gt), reps)
    info['nsd_s'] = timed(lambda: normalized_surface_dice(pred, gt, spacing), reps)
    info['case_s'] = timed(lambda: case_metrics(pred, gt, spacing), reps)
    info['breakdown'] = breakdown(pred, gt, spacing)
    return info

def secs(t)->str: return f"{t:.2f} s" if t >= 1 else f"{1000 * t:.0f} ms" if t >= .01 else f"{1000 * t:.1f} ms"

def rows(info):
    sz = 'x'.join(map(str, info['shape'])); md = lambda k: secs(statistics.median(info[k]))
    return [(f"Dice, one {sz} study (median of {info['reps']})", md('dice_s'), "—"),
            (f"NSD at 3 mm (DeepMind's reference via `normalized_surface_dice`), one {sz} study (median of {info['reps']})", md('nsd_s'), "≤ 2 s"),
            (f"`case_metrics` (Dice, NSD, counts, volumes), one {sz} study (median of {info['reps']})", md('case_s'), "—")]

def report(info):
    m, b = info['metrics'], info['breakdown']
    lines = [f"case: {'x'.join(map(str, info['shape']))} voxels at {info['spacing']} mm (z, y, x); ground truth {m['gt_voxels']} voxels "
             f"({m['gt_ml']:.1f} mL), prediction {m['pred_voxels']}; union bounding box {'x'.join(map(str, info['bbox']))} voxels; "
             f"surface elements {info['surfels'][0]} (truth) + {info['surfels'][1]} (prediction); synthetic Dice {m['dice']:.3f}, NSD {m['nsd']:.3f}",
             f"case generation {info['t_case']:.1f} s; 1-min load average at the start {info['load']:.2f}"]
    lines += [f"{a}: {b_}" for a, b_, _ in rows(info)]
    lines += [f"one NSD call, profiled: {secs(b['total'])}"] + [f"  {k}: {secs(v)} ({100 * v / b['total']:.0f} %)" for k, v in b['parts'].items()]
    return lines

def write_section(info):
    m, b = info['metrics'], info['breakdown']
    replace_section("## Metrics (`bench/bench_metrics.py`)",
        [f"Measured {time.strftime('%Y-%m-%d')} on: {machine()}; 1-min load average {info['load']:.2f} at the start. "
         f"**Synthetic** case: ground truth = the infection mask of `make_phantom({info['shape']}, spacing={info['spacing']}, seed=1)` "
         f"({m['gt_voxels']} voxels, {m['gt_ml']:.1f} mL), prediction = it dilated by one voxel and shifted by (1, 3, -2) voxels "
         f"(synthetic Dice {m['dice']:.3f}, NSD {m['nsd']:.3f}: speed figures, not results). The reference crops both masks to the "
         f"bounding box of their union ({'x'.join(map(str, info['bbox']))} voxels here) before its distance transforms; scipy's "
         "`ndimage` runs single-threaded, so a second core does not help one call.", '',
         '| what | measured | target |', '|---|---|---|'] + [f"| {a} | {b_} | {c} |" for a, b_, c in rows(info)] +
        ['', f"Where one NSD call's {b['total']:.2f} s go (cProfile):", '', '| part | seconds | share |', '|---|---:|---:|'] +
        [f"| {k} | {v:.2f} | {100 * v / b['total']:.0f} % |" for k, v in b['parts'].items()])

if __name__ == '__main__':
    quick = '--quick' in sys.argv
    info = main(**(QUICK if quick else FULL))
    print('\n'.join(report(info)))
    if not quick and '--no-write' not in sys.argv: write_section(info)
