"""Why the CPU demo learns as it does: what its grid allows, what a simple rule reaches, and ablations of the demo profile.

Three measurements on one prepared cache (default: `cache/demo`, as `make demo` leaves it):

1. **The grid's ceiling.** Each reference mask resized to the training grid (as `prepare` does: block
   average, then linear, thresholded at half) and mapped back to its study's grid (as inference maps
   probabilities back: linear, thresholded at 0.5), scored with Dice against itself. A network that
   is perfect at the grid cannot beat this on the original grids.
2. **A tuned HU rule inside the lungs.** Voxels with low < HU < high inside a simple lung hull (air below
   -400 HU not connected to the volume's border, closed in-plane and hole-filled per slice), the window
   chosen on the training cases; Dice on the training and tuning cases at the grid. It says how far
   intensity alone gets, so that a network below it has learnt nothing useful.
3. **Ablations.** Stage-1 runs of `covseg train CACHE RUN --profile demo --stage 1 --set ...`, one per
   entry of ABLATIONS (or read back with --from-runs): steps, best tuning Dice, the first
   epoch with a non-zero tuning Dice and the training and soft Dice at the end. Every row can be
   repeated with the command it shows.

It writes the section "## What the demo's learning is limited by" of BENCHMARKS.md. All data is
synthetic: these numbers are not results of the paper.

    .venv/bin/python bench/bench_learning.py [--cache cache/demo] [--ablations all|NAME,...|none] [--from-runs]
"""
import sys, json, time, argparse, subprocess
from pathlib import Path
import numpy as np
import pandas as pd
from scipy import ndimage as ndi
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import machine, replace_section
from covseg.io import read_image
from covseg.cache import load_case, parse_grid, grid_name, entries, read_manifest
from covseg.run import RunDir
from covseg.volume import resize, resample_to
from covseg.train import get_config, resolve_encoder

ROOT = Path(__file__).resolve().parent.parent
HEAD = "## What the demo's learning is limited by (`bench/bench_learning.py`)"
# name -> `--set` overrides of the demo profile, stage 1 only (the demo profile's own values are the reference row)
ABLATIONS = {
    'demo profile': [],
    'with augmentation': ['aug.p_flip=0.5', 'aug.p_spatial=0.75', 'aug.p_intensity=0.75'],   # the loaders' default AugConfig
}

def dice(p, g)->float:
    s = int(p.sum()) + int(g.sum())
    return float('nan') if s == 0 else 2 * int((p & g).sum()) / s

def grid_ceiling(man:pd.DataFrame, grid)->pd.DataFrame:
    "Dice of each reference mask sent to `grid` and back to its own grid, per dataset."
    rows = []
    for _, r in man.iterrows():
        m = read_image(r['mask']); m = m.with_array((m.array > 0).astype(np.uint8))
        small = resize(m, grid, mask=True)
        back = resample_to(small.with_array(small.array.astype(np.float32)), m.geometry).array >= 0.5
        rows.append(dict(dataset=r.dataset, dice=dice(back, m.array > 0)))
    return pd.DataFrame(rows).groupby('dataset', sort=False).dice.agg(['mean', 'min', 'count'])

AIR_FLOOR_SINCE = '2026-12-02'   # runs trained before this day saw the padding outside the scan circle (no floor at air)

def train_infiltrate_ml(man:pd.DataFrame)->float:
    "Median infiltrate volume (mL) of the training studies of a manifest: how large a cache's phantoms' infiltrates are."
    return float(man.loc[man.split == 'train', 'infection_ml'].median())

def lung_share(man:pd.DataFrame)->np.ndarray:
    "Share of the lungs taken by the infiltrates, for the cases that ship a lung mask (Coronacases)."
    rows = man[man.lung_mask.notna()]
    return np.array([(read_image(r['mask']).array > 0).sum() / max((read_image(r.lung_mask).array > 0).sum(), 1) for _, r in rows.iterrows()])

def lung_hull(img:np.ndarray)->np.ndarray:
    "Air (< -400 HU) not connected to the volume's border, closed in-plane and hole-filled per slice."
    lab, n = ndi.label(img < -400)
    border = np.unique(np.concatenate([lab[:, [0, -1]].ravel(), lab[:, :, [0, -1]].ravel()]))
    inner = np.isin(lab, np.setdiff1d(np.arange(1, n + 1), border))
    inner = ndi.binary_closing(inner, np.ones((1, 5, 5)))
    return np.stack([ndi.binary_fill_holes(s) for s in inner])

def hu_rule(cache, man, grid)->dict:
    "The HU window inside the lung hull that scores best on the training cases, and its Dice on training and tuning cases."
    load = lambda sp: [(np.asarray(i, np.float32), np.asarray(m) > 0) for i, m, _ in map(load_case, entries(cache, man, grid, sp))]
    tr, tu = load('train'), load('tune')
    hulls = {id(i): lung_hull(i) for i, _ in tr + tu}
    score = lambda cases, lo, hi: float(np.nanmean([dice((i > lo) & (i < hi) & hulls[id(i)], m) for i, m in cases]))
    lo, hi = max(((lo, hi) for lo in range(-800, -300, 25) for hi in (-300, -200, -100, 0, 100)), key=lambda w: score(tr, *w))
    inside = np.mean([(m & hulls[id(i)]).sum() / max(m.sum(), 1) for i, m in tr])
    return dict(lo=lo, hi=hi, train=score(tr, lo, hi), tune=score(tu, lo, hi), inside=float(inside),
                share=float(np.mean([m.mean() for _, m in tr])), voxels=float(np.median([m.sum() for _, m in tr])))

def run_ablation(cache, runs:Path, name:str, sets:list)->Path:
    "Stage 1 of the demo profile with `sets` overrides, through the CLI (what a user would type)."
    out = runs/name.replace(' ', '_')
    if out.exists(): subprocess.run(['rm', '-rf', str(out)], check=True)
    cmd = [str(ROOT/'.venv/bin/covseg'), 'train', str(cache), str(out), '--profile', 'demo', '--stage', '1'] + (['--set', *sets] if sets else [])
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out

def _flat(d:dict, prefix:str='')->dict:
    "A nested config dict as {'stage1.lr': ..., 'aug.p_flip': ...}."
    out = {}
    for k, v in d.items():
        if isinstance(v, dict): out.update(_flat(v, f"{prefix}{k}."))
        else: out[prefix + k] = tuple(v) if isinstance(v, list) else v
    return out

def _offline(): raise RuntimeError("offline")

def overrides(cfg:dict)->list:
    "The `--set` overrides that turn the current demo profile into the saved config `cfg` (stage 1 and global settings)."
    ref = get_config('demo')
    if not cfg['pretrained']: ref = resolve_encoder(ref, fetch=_offline, say=lambda *a: None)   # the run trained from scratch: compare with that
    ref, got = _flat(ref.to_dict()), _flat(cfg)
    fmt = lambda v: 'x'.join(map(str, v)) if isinstance(v, tuple) else str(v).lower() if isinstance(v, bool) else str(v)
    return [f"{k}={fmt(got[k])}" for k in got if not k.startswith('stage2.') and k != 'seed' and k in ref and got[k] != ref[k]]

def read_ablation(out:Path)->dict:
    "The row of one stage-1 run folder: its overrides of the demo profile (from its config.json) and its curve."
    run = RunDir(out)
    log = pd.read_csv(run.log(1))
    cfg = run.config().to_dict()
    cache = Path(run.data().cache)
    s1 = cfg['stage1']
    man = read_manifest(cache)
    n_train = len(entries(cache, man, tuple(s1['grid']), 'train'))
    steps = len(log) * int(np.ceil(n_train * s1.get('repeats', 1) / s1['bs']))
    nz = log.index[log.dice.fillna(0) > 0]
    last, sets = log.iloc[-1], overrides(cfg)
    return dict(steps=steps, best=float(log.dice.max()), best_epoch=int(log.dice.idxmax()) + 1, epochs=len(log),
                first_nonzero=int(nz[0]) + 1 if len(nz) else None,
                train_dice=float(last.get('train_dice', float('nan'))), soft_dice=float(last.get('soft_dice', float('nan'))),
                command='`--set ' + ' '.join(sets) + '`' if sets else '(none: the demo profile)', seed=cfg['seed'],
                cache=cache.name, infiltrate=train_infiltrate_ml(man), trained=str(log.time.iloc[0])[:10] if 'time' in log else '?')

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--cache', type=Path, default=ROOT/'cache/demo')
    p.add_argument('--runs', type=Path, default=ROOT/'runs/ablation')
    p.add_argument('--ablations', default='all', help="'all', 'none' or names from ABLATIONS, comma separated")
    p.add_argument('--from-runs', action='store_true', help='read the ablation runs already in --runs instead of training')
    p.add_argument('--benchmarks', type=Path, default=ROOT/'BENCHMARKS.md')
    a = p.parse_args(argv)
    man = read_manifest(a.cache)
    cfg = get_config('demo')
    grids = [cfg.stage1.grid, cfg.stage2.grid]
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on: {machine()}. Cache `{a.cache.relative_to(ROOT) if a.cache.is_relative_to(ROOT) else a.cache}` "
             f"(as `make demo` prepares it): {(man.dataset == 'ricord').sum()} RICORD studies ({(man.split == 'train').sum()} training, "
             f"{(man.split == 'tune').sum()} tuning), {(man.dataset == 'coronacases').sum()} Coronacases, {(man.dataset == 'mosmed').sum()} MosMedData. "
             "**Synthetic data: not results of the paper.**", '']
    share = lung_share(man)
    if len(share):
        lines += [f"**How large the infiltrates are**: they take {100 * np.median(share):.1f} % of the lungs (median; "
                  f"{100 * share.min():.1f} to {100 * share.max():.1f} %) in the {len(share)} studies that ship a lung mask "
                  f"(Coronacases); median infiltrate per RICORD training study {train_infiltrate_ml(man):.0f} mL.", '']
    lines += ["**The grids' ceiling**: each reference mask resized to the grid as `prepare` does and mapped back to its "
              "study as inference does; the mean Dice (lowest) a network perfect at the grid could reach on the original grids.", '',
              '| grid | ' + ' | '.join(man.dataset.unique()) + ' |', '|---|' + '---|' * man.dataset.nunique()]
    for g in grids + [(32, 64, 64)]:
        c = grid_ceiling(man, g)
        lines.append(f"| {grid_name(g)}{' (demo)' if g in grids else ''} | " + ' | '.join(f"{c.loc[d, 'mean']:.3f} ({c.loc[d, 'min']:.3f})" for d in man.dataset.unique()) + ' |')
    lines += ['', "**A tuned HU rule inside the lungs** (window chosen on the training cases, lung hull from an air threshold), "
              "at each demo grid:", '', '| grid | infiltrate share / median voxels per training case | share inside the lung hull | best window (HU) | Dice, training cases | Dice, tuning cases |',
              '|---|---|---|---|---|---|']
    for g in grids:
        h = hu_rule(a.cache, man, g)
        lines.append(f"| {grid_name(g)} | {100 * h['share']:.2f} % / {h['voxels']:.0f} | {100 * h['inside']:.0f} % | {h['lo']} to {h['hi']} | {h['train']:.3f} | {h['tune']:.3f} |")
    names = list(ABLATIONS) if a.ablations == 'all' else [] if a.ablations == 'none' else a.ablations.split(',')
    if names or a.from_runs:
        if not a.from_runs:
            for n in names: run_ablation(a.cache, a.runs, n, ABLATIONS[n])
        rows = {d.name.replace('_', ' '): read_ablation(d) for d in sorted(a.runs.iterdir()) if (d/'stage1'/'log.csv').exists()}
        s1 = cfg.stage1
        lines += ['', f"**Ablations of stage 1** (`covseg train {a.cache.name} RUN --profile demo --stage 1 --set ...`; the demo profile: "
                  f"{grid_name(s1.grid)}, batch {s1.bs}, {s1.epochs} epochs of {s1.repeats} passes, one-cycle lr {s1.lr:g}). "
                  "Training Dice is on the training batches as the network saw them (augmented where augmentation is on), soft Dice on the tuning cases, both at the last epoch. "
                  f"Runs trained before {AIR_FLOOR_SINCE} saw the padding outside the scan circle (no floor at air, see `12_loaders`):", '',
                  '| run | trained | cache (median infiltrate per training study) | overrides of the demo profile | seed | optimiser steps | best tuning Dice (epoch) | first epoch with tuning Dice > 0 | training Dice, last epoch | soft tuning Dice, last epoch |',
                  '|---|---|---|---|---|---|---|---|---|---|']
        for n, r in rows.items():
            lines.append(f"| {n} | {r['trained']} | `{r['cache']}` ({r['infiltrate']:.0f} mL) | {r['command']} | {r['seed']} | {r['steps']} | {r['best']:.3f} ({r['best_epoch']} of {r['epochs']}) | "
                         f"{r['first_nonzero'] or 'never'} | {r['train_dice']:.3f} | {r['soft_dice']:.3f} |")
    replace_section(HEAD, lines, a.benchmarks)
    print('\n'.join(lines))

if __name__ == '__main__': main()
