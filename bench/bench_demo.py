"""Benchmark of the CPU demo (`make demo`) over several training seeds.

For each seed S (default 0 1 2) it runs, from the repository root,
`make demo DEMO_SEED=S DEMO_RUN=runs/bench_demo/seedS` (synthesise, prepare, train both stages with the
demo profile, evaluate both inference modes, write the report; DEMO_SEED changes only the training
seed, the synthetic data is the same for every seed), streams make's output to
runs/bench_demo/seedS.log and times the whole command (runs/bench_demo/seedS.json). Then it reads
each run: stage<k>/done.json and stage<k>/log.csv (time of each stage, best tuning Dice and its
epoch, the learning curves), eval/cases.csv (mean Dice and NSD per dataset and inference mode, over
the cases whose Dice is defined), eval/lungs.csv (covseg's lung masks against the synthetic
Coronacases ones) and config.json (the demo profile's settings).

It writes the section "## Demo run on the CPU" of BENCHMARKS.md (per seed, the median over seeds,
the targets met or not), the curves of every seed in bench/figures/demo_curves.png and the per-seed
numbers in bench/figures/demo_runs.csv (both next to the BENCHMARKS file written). All data is
synthetic: the Dice values are not results of the paper.

Run from the repository root (about 11 minutes a seed on 2 cores):
    .venv/bin/python bench/bench_demo.py [--seeds 0 1 2 | --n 3] [--keep] [--make-args 'DEMO_CASES=6']
    .venv/bin/python bench/bench_demo.py --from-runs      # only re-read runs/bench_demo/seed*/ and rewrite
Without --keep the run folders are deleted once the section is written (the logs stay); --from-runs
needs them. Exits 1 if a `make demo` failed (the section is still written, the seed marked)."""
import sys, re, json, time, shlex, shutil, argparse, statistics, subprocess
from pathlib import Path
import numpy as np
import pandas as pd
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import machine, replace_section
from covseg.metrics import summarise, DATASET_NAMES
from covseg.datasets import DATASETS
from covseg.core import CovsegInputError
from covseg.cache import read_manifest
from covseg.run import RunDir

ROOT = Path(__file__).resolve().parent.parent
HEAD = "## Demo run on the CPU"                      # the section is found by this start of its heading
NEW_HEAD = "## Demo run on the CPU (`make demo`)"   # the heading when the file has no such section yet
MODES = ('paper', 'sliding')
HOLDOUT = ('coronacases', 'mosmed')
MAX_WALL_S, MIN_TUNE_DICE, MIN_HOLDOUT_DICE, EARLY_DICE = 15 * 60, 0.8, 0.65, 0.1   # the targets (0.1: clearly off 'all background')
CURVES = ('dice', 'train_dice', 'soft_dice')     # per-epoch Dice columns drawn when the log has them
STYLES = dict(dice='-', train_dice='--', soft_dice=':')
LABELS = dict(dice='tuning Dice', train_dice='training Dice (as trained)', soft_dice='tuning soft Dice')

# ---------------------------------------------------------------- running
def run_make(seed:int, runs:Path, make_args:list)->dict:
    "Run `make demo` for `seed` into runs/seed<seed>, output in runs/seed<seed>.log; record exit code and wall time."
    run = runs/f'seed{seed}'
    cmd = ['make', '--no-print-directory', 'demo', f'DEMO_SEED={seed}', f'DEMO_RUN={_rel(run)}', *make_args]
    print(f"seed {seed}: {' '.join(cmd)}  (log: {_rel(runs/f'seed{seed}.log')})", flush=True)
    t0 = time.time()
    with open(runs/f'seed{seed}.log', 'w') as log: rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    rec = dict(seed=seed, exit_code=rc, wall_s=round(time.time() - t0, 1), make_args=make_args,
               started=time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(t0)))
    (runs/f'seed{seed}.json').write_text(json.dumps(rec, indent=1))
    print(f"seed {seed}: exit {rc}, {fmt_s(rec['wall_s'])}", flush=True)
    if rc: print(''.join((runs/f'seed{seed}.log').read_text().splitlines(True)[-20:]), file=sys.stderr)   # the end of the failed log
    return rec

def _rel(p:Path)->str:
    "`p` relative to the repository root when inside it (as make sees it), else absolute."
    p = Path(p).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)

# ---------------------------------------------------------------- reading one run
def _json(p:Path)->dict:
    return json.loads(p.read_text()) if p.is_file() else {}

def _csv(p:Path)->pd.DataFrame|None:
    return pd.read_csv(p, dtype={'case_id': str}) if p.is_file() else None

def stage_seconds(done:dict, log:pd.DataFrame|None)->tuple:
    "(seconds, estimated?) of a stage: done.json's `seconds`, else the span of log.csv's times plus one mean epoch."
    if done.get('seconds') is not None: return float(done['seconds']), False
    if log is None or len(log) < 2: return float('nan'), True
    t = pd.to_datetime(log['time'])
    span = (t.iloc[-1] - t.iloc[0]).total_seconds()     # from the end of the first epoch to the end of the last
    return span * len(log) / (len(log) - 1), True

def read_stage(run:Path, k:int)->dict:
    "Summary and log of stage `k` of a run (NaN where the stage did not finish)."
    done, log = _json(RunDir(run).done(k)), _csv(RunDir(run).log(k))
    secs, est = stage_seconds(done, log)
    return dict(seconds=secs, seconds_estimated=est, best=done.get('best_dice', float('nan')),
                best_epoch=done.get('best_epoch', float('nan')), epochs=done.get('epochs', 0 if log is None else len(log)), log=log)

def eval_means(cases:pd.DataFrame|None)->dict:
    "Per mode and dataset: mean Dice and NSD over the cases where they are defined, n cases and n undefined (Dice NaN)."
    out = {}
    for m in MODES:
        c = None if cases is None else cases[cases['mode'] == m]
        if c is None or not len(c): continue
        d, s = summarise(c, 'dice'), summarise(c, 'nsd')
        for ds in d.index:
            out.update({f'{m}_{ds}_dice': d.loc[ds, 'mean'], f'{m}_{ds}_nsd': s.loc[ds, 'mean'],
                        f'{m}_{ds}_n': int(d.loc[ds, 'n']), f'{m}_{ds}_undefined': int(d.loc[ds, 'n_undefined'])})
    if cases is not None and 'seconds' in cases:
        out.update(eval_s_min=cases['seconds'].min(), eval_s_max=cases['seconds'].max())
    return out

def lung_means(lungs:pd.DataFrame|None)->dict:
    "Mean and lowest Dice and NSD per lung of covseg's lung masks against the shipped ones (eval/lungs.csv)."
    if lungs is None or not len(lungs): return {}
    return dict(lung_n=len(lungs), **{f'lung_{k}_{s}_{f}': float(getattr(lungs[f'{k}_{s}'], f)())
                                      for k in ('dice', 'nsd') for s in ('left', 'right') for f in ('mean', 'min')})

def first_epoch_above(curve:pd.DataFrame, thr:float)->float:
    "First cumulative epoch whose tuning Dice exceeds `thr` (NaN if none)."
    hit = curve.loc[curve['dice'] > thr, 'epoch']
    return float(hit.iloc[0]) if len(hit) else float('nan')

def curves(stages:list)->pd.DataFrame:
    "Both stages' logs, one row per epoch, with the cumulative `epoch` (stage 2 counts on after stage 1) and `stage`."
    parts, off = [], 0
    for k, st in enumerate(stages, 1):
        if st['log'] is None: continue
        d = st['log'].assign(stage=k, epoch=lambda x: off + x['stage_epoch'])
        parts.append(d); off += len(d)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=['stage', 'epoch', 'dice', 'train_loss'])

def read_run(runs:Path, seed:int)->dict:
    "Everything the section needs about one seed: make's record, both stages, the curves, the evaluation."
    run = runs/f'seed{seed}'
    rec = _json(runs/f'seed{seed}.json') or dict(seed=seed, exit_code=None, wall_s=float('nan'), make_args=[])
    stages = [read_stage(run, k) for k in (1, 2)]
    cur, cfg = curves(stages), _json(RunDir(run).config_file)
    r = dict(seed=seed, exit_code=rec['exit_code'], wall_s=rec['wall_s'], make_args=rec.get('make_args', []), config=cfg, curves=cur)
    for k, st in enumerate(stages, 1):
        r.update({f's{k}_{f}': st[f] for f in ('seconds', 'seconds_estimated', 'best', 'best_epoch', 'epochs')})
    r['stage1_epochs'] = stage_epochs(cfg, 1) or r['s1_epochs']
    r['first_above'] = first_epoch_above(cur, EARLY_DICE)
    r['early'] = r['first_above'] <= r['stage1_epochs'] / 4 if np.isfinite(r['first_above']) and r['stage1_epochs'] else False
    r.update(eval_means(_csv(RunDir(run).cases_csv)))
    r.update(lung_means(_csv(RunDir(run).lungs_csv)))
    return r

def stage_epochs(cfg:dict, k:int)->int:
    "Epochs of stage `k` in a run's config.json (frozen + unfrozen); 0 if unknown."
    s = cfg.get(f'stage{k}') or {}
    return int(s.get('epochs', 0)) + int(s.get('frozen_epochs', 0))

def found_seeds(runs:Path)->list:
    "Seeds with a run folder or a make record under `runs`."
    return sorted({int(m.group(1)) for p in runs.glob('seed*') if (m := re.fullmatch(r'seed(\d+)(\.json)?', p.name))})

# ---------------------------------------------------------------- formatting
def fmt_s(s)->str:
    "Seconds as '42 s' or '10 min 53 s'; '—' when unknown."
    if s is None or not np.isfinite(s): return '—'
    s = round(s)
    return f"{s} s" if s < 60 else f"{s // 60} min {s % 60} s"

def f3(v)->str:
    return '—' if v is None or not np.isfinite(v) else f"{v:.3f}"

def failed(r:dict)->bool:
    "Did this seed's `make demo` fail (a non-zero exit code recorded)?"
    return r['exit_code'] not in (0, None)

def median(runs:list, key:str)->float:
    "Median over the seeds that have a finite `key` (for the wall time of `make demo`: the seeds whose make succeeded)."
    v = [r[key] for r in runs if r.get(key) is not None and np.isfinite(r[key]) and not (key == 'wall_s' and failed(r))]
    return statistics.median(v) if v else float('nan')

def status(ok)->str:
    return '—' if ok is None else ('**met**' if ok else '**not met**')

def _cmp(v:float, ok)->bool|None:
    "`ok(v)` for a finite median, None when there is nothing to compare."
    return bool(ok(v)) if np.isfinite(v) else None

def settings(cfg:dict, steps:dict)->str:
    "The demo profile's main settings from config.json, e.g. 'stage 1: 40 epochs at 16x48x48, batch 2, lr 5e-3, ...'."
    if not cfg: return 'settings unknown (no config.json)'
    out = []
    for k in (1, 2):
        s = cfg[f'stage{k}']
        frozen = f"{s['frozen_epochs']} frozen epochs (lr {s['frozen_lr']:g}) then " if s.get('frozen_epochs') else ''
        st = f", {steps[k]} steps per epoch" if steps.get(k) else ''
        out.append(f"stage {k}: {frozen}{s['epochs']} epochs at {'x'.join(map(str, s['grid']))}, batch {s['bs']}, "
                   f"one-cycle lr {s['lr']:g}{st}" + (", from stage 1's best" if k == 2 else ''))
    out.append('Kinetics-400 encoder' if cfg.get('pretrained') else 'random encoder: no Kinetics weights offline')
    if cfg.get('max_batches'): out.append(f"at most {cfg['max_batches']} batches per epoch")
    return '; '.join(out)

def steps_per_epoch(run:Path, cfg:dict)->dict:
    "Training batches per epoch of each stage: RICORD training cases of the run's cache, times the stage's repeats, / batch size (None if unknown)."
    try: man = read_manifest(RunDir(run).data().cache)
    except CovsegInputError: return {}
    n = int((man['split'] == 'train').sum())
    out = {}
    for k in (1, 2):
        bs, rep = cfg[f'stage{k}']['bs'], cfg[f'stage{k}'].get('repeats', 1)
        out[k] = min(-(-n * rep // bs), cfg.get('max_batches') or np.inf)
    return out

def make_var(name:str, make_args:list)->str:
    "A Makefile variable as the run saw it: a NAME=value of the extra make arguments, else the Makefile's default."
    for a in make_args[::-1]:
        if a.startswith(f'{name}='): return a.split('=', 1)[1]
    m = re.search(rf'^{name}\s*\??=\s*(.*)$', (ROOT/'Makefile').read_text(), re.M)
    return m.group(1).strip() if m else '?'

def make_grids()->str:
    "The grids `make demo` prepares (its `covseg prepare --grids`)."
    m = re.search(r'--grids\s+(\S+)', (ROOT/'Makefile').read_text())
    return m.group(1).replace(',', ' and ') if m else '?'

# ---------------------------------------------------------------- the section
def seed_row(r:dict)->list:
    "The table cells of one seed."
    est = lambda k: ('~' if r[f's{k}_seconds_estimated'] and np.isfinite(r[f's{k}_seconds']) else '') + fmt_s(r[f's{k}_seconds'])
    best = lambda k: f"{f3(r[f's{k}_best'])} ({r[f's{k}_best_epoch']:.0f})" if np.isfinite(r[f's{k}_best']) else '—'
    fa = r['first_above']
    early = f"{fa:.0f} ({'yes' if r['early'] else 'no'})" if np.isfinite(fa) else 'never (no)' if len(r['curves']) else '—'
    name = f"{r['seed']} (**make failed**, exit {r['exit_code']})" if failed(r) else str(r['seed'])
    return [name, fmt_s(r['wall_s']), est(1), est(2), best(1), best(2), early,
            *[dice_nsd(r, 'paper', ds) for ds in HOLDOUT], dice_nsd(r, 'paper', 'ricord')]

def dice_nsd(r:dict, mode:str, ds:str)->str:
    "'Dice / NSD' of a dataset, with the number of cases left out as undefined when any."
    d, s, u = r.get(f'{mode}_{ds}_dice'), r.get(f'{mode}_{ds}_nsd'), r.get(f'{mode}_{ds}_undefined')
    return f"{f3(d)} / {f3(s)}" + (f" ({u} undefined)" if u and np.isfinite(u) else '')

def median_row(runs:list)->list:
    m = lambda k: median(runs, k)
    md = lambda mode, ds: f"{f3(m(f'{mode}_{ds}_dice'))} / {f3(m(f'{mode}_{ds}_nsd'))}"
    fa = m('first_above')
    return ['**median**', fmt_s(m('wall_s')), fmt_s(m('s1_seconds')), fmt_s(m('s2_seconds')), f3(m('s1_best')), f3(m('s2_best')),
            '—' if not np.isfinite(fa) else f"{fa:g}", *[md('paper', ds) for ds in HOLDOUT], md('paper', 'ricord')]

def n_cases(runs:list, mode:str, ds:str)->str:
    "Number of cases of a dataset, as '12' or '11-12' when seeds differ."
    ns = sorted({r[f'{mode}_{ds}_n'] for r in runs if f'{mode}_{ds}_n' in r})
    return '?' if not ns else str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"

def targets(runs:list, q:float)->list:
    "Rows of the targets table: what, median over the seeds, met or not."
    wall, tune, fa = median(runs, 'wall_s'), median(runs, 's2_best'), median(runs, 'first_above')
    rows = [(f"wall time of `make demo` ≤ {MAX_WALL_S // 60} min", fmt_s(wall), _cmp(wall, lambda v: v <= MAX_WALL_S)),
            (f"best tuning Dice at the training grid (stage 2: the model evaluated) ≥ {MIN_TUNE_DICE}", f3(tune), _cmp(tune, lambda v: v >= MIN_TUNE_DICE))]
    for ds in HOLDOUT:
        v = median(runs, f'paper_{ds}_dice')
        rows.append((f"hold-out mean Dice, paper mode, {DATASET_NAMES[ds]} ≥ {MIN_HOLDOUT_DICE}", f3(v), _cmp(v, lambda v: v >= MIN_HOLDOUT_DICE)))
    rows.append((f"tuning Dice > {EARLY_DICE} within the first quarter of stage 1 (epoch ≤ {q:g})",
                 '—' if not np.isfinite(fa) else f"epoch {fa:g}", _cmp(fa, lambda v: v <= q)))
    return [f"| {a} | {b} | {status(c)} |" for a, b, c in rows]

def section(runs:list, figure:str)->list:
    "The lines of the section (below its heading)."
    ok = [r for r in runs if r['config']]
    cfg = ok[0]['config'] if ok else {}
    args = runs[0]['make_args'] if runs else []
    runs_dir = runs[0].get('runs_dir', 'runs/bench_demo')
    q = (ok[0]['stage1_epochs'] if ok else 0) / 4
    extra = (' ' + ' '.join(args)) if args else ''
    seeds = ', '.join(str(r['seed']) for r in runs)
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on: {machine()}. `make demo DEMO_SEED=<seed> DEMO_RUN={runs_dir}/seed<seed>{extra}` "
             f"(`bench/bench_demo.py`) for the seeds {seeds}, one after another, with the project already installed: synthesise "
             f"{make_var('DEMO_RICORD', args)} RICORD studies and {make_var('DEMO_CASES', args)} of each hold-out dataset with "
             f"{make_var('DEMO_LESIONS', args).replace('-', ' to ')} infiltrates of {make_var('DEMO_LESION_MM', args).replace('-', ' to ')} mm "
             f"radius per phantom (`--lesions {make_var('DEMO_LESIONS', args)} --lesion-mm {make_var('DEMO_LESION_MM', args)}`; "
             "the same data for every seed), prepare them at "
             f"{make_grids()}, train both stages with the {cfg.get('profile', 'demo')} profile "
             f"({settings(cfg, steps_per_epoch(Path(ok[0]['run']), cfg) if ok else {})}), evaluate both inference modes on "
             "the RICORD tuning part and the two hold-out sets, write the report. The seed sets the training only "
             "(weights, augmentation, batch order). **Synthetic data: these Dice values are not results of the paper.**", '',
             f"Per seed: wall time of `make demo` (all steps), of each training stage{_est_note(runs)}, the best tuning Dice "
             "of each stage at its training grid (stage epoch), the first epoch at which the tuning Dice exceeds "
             f"{EARLY_DICE} (counted over both stages; in the first quarter of stage 1?), and the paper-mode evaluation on the "
             f"original grids: mean Dice / NSD (3 mm) of Coronacases (n={n_cases(runs, 'paper', 'coronacases')}) and "
             f"MosMedData (n={n_cases(runs, 'paper', 'mosmed')}), and of the RICORD tuning part (n={n_cases(runs, 'paper', 'ricord')}). "
             "Means over the cases whose Dice is defined (a case with both masks empty is left out and counted).", '',
             "| seed | `make demo` | stage 1 | stage 2 | best tuning Dice, stage 1 (epoch) | stage 2 (epoch) "
             f"| tuning Dice > {EARLY_DICE} from epoch (first quarter) | Coronacases Dice / NSD | MosMedData Dice / NSD | RICORD tuning Dice / NSD |",
             '|---|---|---|---|---|---|---|---|---|---|']
    lines += ['| ' + ' | '.join(seed_row(r)) + ' |' for r in runs] + ['| ' + ' | '.join(median_row(runs)) + ' |', '']
    bad = [str(r['seed']) for r in runs if failed(r)]
    if bad: lines += [f"`make demo` failed for seed {', '.join(bad)} (see its log): the table shows what it finished; its wall "
                      "time is left out of the median.", '']
    lines += [f"| target (median over the {len(runs)} seed{'s' if len(runs) > 1 else ''}) | measured | status |", '|---|---|---|', *targets(runs, q), '']
    lines += other_figures(runs) + ['', f"![Tuning Dice and training loss per epoch of every seed, both stages (synthetic data)]({figure})", '',
                                    f"Per-seed numbers: `{Path(figure).with_name('demo_runs.csv').as_posix()}`; make's output: "
                                    f"`{runs_dir}/seed<seed>.log` (not committed)."]
    return lines

def _est_note(runs:list)->str:
    return (" (~: done.json has no `seconds`, so the span of log.csv's epoch times plus one mean epoch, without the "
            "stage's start-up)") if any(r[f's{k}_seconds_estimated'] and np.isfinite(r[f's{k}_seconds']) for r in runs for k in (1, 2)) else ''

def other_figures(runs:list)->list:
    "Bullets: sliding mode, evaluation time per study and the lung masks (medians over the seeds)."
    m = lambda k: median(runs, k)
    out = ["- Sliding mode, median over the seeds, mean Dice / NSD: " +
           ', '.join(f"{DATASET_NAMES[ds]}{' tuning' if ds == 'ricord' else ''} {f3(m(f'sliding_{ds}_dice'))} / {f3(m(f'sliding_{ds}_nsd'))}"
                     for ds in (*HOLDOUT, 'ricord')) + '.']
    lo, hi = min((r.get('eval_s_min', np.nan) for r in runs), default=np.nan), max((r.get('eval_s_max', np.nan) for r in runs), default=np.nan)
    if np.isfinite(lo): out.append(f"- Evaluation, each study and mode (predict, metrics, mask written): {lo:.1f}-{hi:.1f} s.")
    if np.isfinite(m('lung_dice_left_mean')):
        out.append(f"- covseg's lung masks (with the predicted infiltrate) against the synthetic Coronacases `Lung_Mask` "
                   f"(n={n_lungs(runs)}), median over the seeds: mean Dice left / right {f3(m('lung_dice_left_mean'))} / "
                   f"{f3(m('lung_dice_right_mean'))} (lowest {f3(m('lung_dice_left_min'))} / {f3(m('lung_dice_right_min'))}); "
                   f"NSD at 1 mm {f3(m('lung_nsd_left_mean'))} / {f3(m('lung_nsd_right_mean'))}.")
    return out

def n_lungs(runs:list)->str:
    ns = sorted({r['lung_n'] for r in runs if 'lung_n' in r})
    return str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"

# ---------------------------------------------------------------- picture and CSV
def plot_curves(runs:list, out_png:Path):
    "Tuning Dice (and train / soft Dice where logged) and training loss over the cumulative epoch, one colour per seed."
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    fig, (ad, al) = plt.subplots(1, 2, figsize=(10, 3.6))
    styles = set()
    for i, r in enumerate(runs):
        c = r['curves']
        if not len(c): continue
        for col in CURVES:
            if col in c and c[col].notna().any(): ad.plot(c['epoch'], c[col], STYLES[col], color=f'C{i}', lw=1.2); styles.add(col)
        al.plot(c['epoch'], c['train_loss'], color=f'C{i}', lw=1.2)
        n1 = int((c['stage'] == 1).sum())
        if n1 < len(c):
            for a in (ad, al): a.axvline(n1 + .5, ls=':', c='grey', lw=.8)
    for y, what in ((MIN_TUNE_DICE, 'target'), (EARLY_DICE, 'early target')):
        ad.axhline(y, c='k', lw=.6, alpha=.3); ad.annotate(f'{what} {y:g}', (.01, y), xycoords=('axes fraction', 'data'), fontsize=7, alpha=.6, va='bottom')
    ad.set(xlabel='epoch (stage 1, then stage 2; dotted line: stage boundary)', ylabel='Dice', ylim=(-.02, 1.02))
    al.set(xlabel='epoch', ylabel='training loss')
    ad.legend(handles=[Line2D([], [], color=f'C{i}', label=f"seed {r['seed']}" + (' (make failed)' if failed(r) else '')) for i, r in enumerate(runs)] +
                      [Line2D([], [], ls=STYLES[k], color='k', label=LABELS[k]) for k in CURVES if k in styles], fontsize=7, loc='best')
    fig.suptitle(f"make demo, {len(runs)} training seeds: SYNTHETIC data (not results of the paper)", fontsize=10)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=90); plt.close(fig)

def write_csv(runs:list, path:Path):
    "The per-seed numbers, one row per seed (no curves or config)."
    rows = [{k: v for k, v in r.items() if k not in ('curves', 'config', 'make_args', 'run', 'runs_dir')} | {'make_args': ' '.join(r['make_args'])} for r in runs]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False, float_format='%.4g')

def write_section(lines:list, path:Path):
    "Replace the section whose heading starts with HEAD in `path` (keeping that heading), or append it."
    text = path.read_text() if path.exists() else ''
    m = re.search(rf'^{re.escape(HEAD)}.*$', text, re.M)
    replace_section(m.group(0) if m else NEW_HEAD, lines, path)

# ---------------------------------------------------------------- main
def main(a)->int:
    runs_dir = Path(a.runs) if Path(a.runs).is_absolute() else ROOT/a.runs
    seeds = a.seeds if a.seeds is not None else list(range(a.n)) if a.n is not None else None
    if a.from_runs: seeds = seeds if seeds is not None else found_seeds(runs_dir)
    else:
        seeds = seeds if seeds is not None else [0, 1, 2]
        runs_dir.mkdir(parents=True, exist_ok=True)
        for s in seeds: run_make(s, runs_dir, shlex.split(a.make_args))
    if not seeds: sys.exit(f"no runs under {runs_dir}")
    runs = [read_run(runs_dir, s) | dict(run=str(runs_dir/f'seed{s}'), runs_dir=_rel(runs_dir)) for s in seeds]
    bench = Path(a.benchmarks).resolve()
    figs = bench.parent/'bench'/'figures'
    plot_curves(runs, figs/'demo_curves.png')
    write_csv(runs, figs/'demo_runs.csv')
    write_section(section(runs, 'bench/figures/demo_curves.png'), bench)
    print(f"written: {bench} (section {HEAD!r}), {figs/'demo_curves.png'}, {figs/'demo_runs.csv'}")
    if not (a.keep or a.from_runs):
        for s in seeds: shutil.rmtree(runs_dir/f'seed{s}', ignore_errors=True)
    bad = [r['seed'] for r in runs if failed(r)]
    if bad: print(f"make demo failed for seed(s) {bad}: see {_rel(runs_dir)}/seed<seed>.log", file=sys.stderr)
    return 1 if bad else 0

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    g = ap.add_mutually_exclusive_group()
    g.add_argument('--seeds', type=int, nargs='+', help='training seeds (default 0 1 2; with --from-runs: every seed found)')
    g.add_argument('--n', type=int, help='seeds 0 .. N-1')
    ap.add_argument('--keep', action='store_true', help='keep the run folders (default: delete them once the section is written)')
    ap.add_argument('--from-runs', action='store_true', help='run nothing: read the existing RUNS/seed*/ folders and write the section')
    ap.add_argument('--runs', default='runs/bench_demo', help='folder of the runs and logs (default runs/bench_demo)')
    ap.add_argument('--benchmarks', default=str(ROOT/'BENCHMARKS.md'), help='file to write (figures go to bench/figures/ next to it)')
    ap.add_argument('--make-args', default='', help="extra make arguments, e.g. 'DEMO_CASES=6' (one string)")
    sys.exit(main(ap.parse_args()))
