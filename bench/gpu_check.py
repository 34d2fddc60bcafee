"""`make gpu-check`: everything covseg wants to know from a CUDA machine, in one command and a time budget.

On a CUDA machine (the default budget, 480 s, fits one H200 with 16 cores), in this order:

1. the `cuda`-flagged notebook cells: `nbdev-test --flags cuda` on nbs/12_loaders, 91_ddp and 30_infer (in the
   background, while the data for part 3 is made on the CPU); the check fails if they fail;
2. the paper-size training step per stage with mixed precision (`bench_train.stage_step`): step time, samples/s,
   achieved TFLOP/s, the epoch of 100 volumes, peak `torch.cuda.max_memory_allocated`, the loader's share of the step;
3. a shortened run of the `paper` profile (both stages, fewer epochs, `pretrained=False`: the GPU machine has no internet
   and no Kinetics-400 weights) on full-size synthetic RICORD studies (250x512x512 DICOM, 6 to 10 infiltrates each,
   cached at the paper's grids), asserting that each stage's training loss falls and its tuning Dice rises;
4. whole-study inference (300x512x512) in both modes, `paper` and `sliding` (`bench_infer.gpu_rows`);
5. the "## GPU" section of BENCHMARKS.md: the card, the date, the figures and the checks against the targets (stage 2
   peak memory under 8 GB, loader under 20 % of the step, stage-1 / stage-2 epochs against the paper's 45 s / 150 s on
   an RTX 2080 Ti; paper: 10 h 49 min in all).

A part that would not fit into what is left of `--budget` is skipped with a note (training stops early at its share of
the budget); the section is written even when a part failed, which it then says. Exit status: 0 when every part ran
and every check was met, 1 when a part failed or a check was missed, 2 when nothing failed but a part was skipped for
the budget (or there is no CUDA GPU: then nothing is written).

`--cpu-test` runs the same code on the CPU at tiny sizes (six 16x64x64 studies, grids 8x32x32 and 8x48x48, one epoch
per phase of one batch, a 24x64x64 study to segment) and writes the section into `--out` (default: a file in the temporary folder), never into
BENCHMARKS.md; targets are shown but not enforced there. nbs/92_gpu_check.ipynb tests it.

Run: `make gpu-check` (or `.venv/bin/python bench/gpu_check.py [--budget 480] [--parts step,train]`)."""
import argparse, gc, json, os, re, signal, subprocess, sys, tempfile, time, shutil, traceback
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path: sys.path.insert(0, str(HERE))
# Only the standard library at import time: the worker processes that draw phantoms (spawned) import this file again.

HEAD = '## GPU'
CUDA_NBS = ('12_loaders', '91_ddp', '30_infer')
PARTS = ('notebooks', 'data', 'step', 'train', 'infer')
TITLES = dict(notebooks='1. `cuda` notebook cells', data='data for part 3', step='2. training step per paper stage',
              train='3. paper profile, shortened', infer='4. whole-study inference')
PAPER_EPOCH_S = (45., 150.)                  # the paper's seconds per epoch on an RTX 2080 Ti, stage 1 and stage 2
PAPER_TOTAL = '10 h 49 min'
PAPER_EPOCHS = (10 + 200, 200)               # the paper's schedule: stage 1 10 frozen + 200, stage 2 200 epochs
MEM_TARGET_GB, LOADER_TARGET = 8., 0.20
# what the GPU section says until a GPU run has replaced it
NO_GPU_YET = ["No GPU figure exists yet: no CUDA GPU has been at hand. `make gpu-check` on a CUDA machine produces them "
              "(`bench/gpu_check.py`, at most 8 minutes on one GPU): it runs the `cuda`-flagged notebook cells, measures the training "
              "step of both paper stages with mixed precision (step time, samples/s, achieved TFLOP/s, the epoch of 100 volumes, peak "
              "GPU memory, the covseg loader's share of the step), trains both stages of a shortened `paper` profile on full-size "
              "synthetic studies (no pretrained encoder: the machine is offline), times whole-study inference in both modes, and "
              "replaces this section with the figures, the card's name and the checks. Targets: stage 2 peak memory under 8 GB; "
              "the loader under 20 % of the step. The paper's figures on an RTX 2080 Ti: 45 s per stage-1 epoch, 2:30 min per "
              "stage-2 epoch, 10 h 49 min in total."]
# the CPU test's study: 2 patches in sliding mode (bench_infer.FULL is the GPU's: 300x512x512)
TINY_STUDY = dict(shape=(24, 64, 64), spacing=(12.5, 5.6, 5.6), grid=(8, 32, 32), slide_spacing=(25.0, 11.2, 11.2))

@dataclass
class Sizes:
    "What a run measures at: the paper's sizes on the GPU, or tiny ones on the CPU (`--cpu-test`); the code is the same."
    device: str
    cases: int              # synthetic RICORD studies (train + tune split by patient)
    size: object            # synthetic study size: 'full' (RICORD 250x512x512) or (z, y, x)
    lesions: tuple          # infiltrates per phantom (lo, hi)
    grids: tuple            # (stage-1 grid, stage-2 grid)
    bs: tuple               # batch size per stage
    epochs: tuple           # (stage-1 frozen, stage-1 unfrozen, stage-2)
    max_batches: int|None   # cap on batches per epoch (None: all)
    step_n: int             # timed training steps per stage
    loader_n: int           # timed steps with the covseg loader
    warmup: int             # untimed steps before them
    infer: dict             # the study and grid to segment (bench_infer.FULL; TINY_STUDY for the CPU test)
    need: dict              # seconds each part needs at least: with less left it is skipped
    workers: int            # processes drawing phantoms ahead of `write_ricord`
    enforce: bool           # does a missed target fail the check?
    budget: float           # default --budget

def sizes(cpu_test:bool=False)->Sizes:
    import bench_infer
    if cpu_test:
        return Sizes('cpu', 6, (16, 64, 64), (6, 10), ((8, 32, 32), (8, 48, 48)), (2, 1), (1, 1, 1), 1, 1, 1, 0,
                     TINY_STUDY, dict(notebooks=1, data=5, step=10, train=15, infer=5), 2, False, 600.)
    return Sizes('cuda', 10, 'full', (6, 10), ((18, 112, 112), (20, 256, 256)), (6, 1), (2, 80, 40), None, 5, 8, 2,
                 bench_infer.FULL, dict(notebooks=60, data=60, step=45, train=60, infer=30), max(1, min(10, (os.cpu_count() or 2) // 2)), True, 480.)

# ---------------------------------------------------------------- budget, parts, checks

class Budget:
    "Seconds left of a total budget; `skip_note(need)` says why a part that needs `need` seconds is skipped (None: it fits)."
    def __init__(self, total:float, clock=time.monotonic): self.total, self.clock, self.t0 = float(total), clock, clock()
    def used(self)->float: return self.clock() - self.t0
    def left(self)->float: return self.total - self.used()
    def skip_note(self, need:float)->str|None:
        left = self.left()
        if left >= need: return None
        return f"skipped for the time budget: {max(left, 0):.0f} s of {self.total:.0f} s left, this part needs about {need:.0f} s"

@dataclass
class Part:
    name: str
    status: str = 'ok'       # ok | failed | skipped | not run
    seconds: float = 0.
    note: str = ''
    data: dict = field(default_factory=dict)
    budget: bool = False     # skipped for the time budget

@dataclass
class Check:
    what: str
    measured: str
    target: str
    ok: bool|None            # None: not measured
    enforced: bool = True

def run_part(name, fn, ctx, budget:Budget, parts, need:float)->Part:
    "Run part `name` (`fn(ctx)` returns its data dict, or a Part) unless deselected or out of budget; a failure is recorded, not raised."
    if name not in parts: return Part(name, 'not run', note='not asked for (`--parts`)')
    if (why := budget.skip_note(need)) is not None: print(f"[gpu-check] {name}: {why}", flush=True); return Part(name, 'skipped', note=why, budget=True)
    print(f"[gpu-check] {name} ({budget.left():.0f} s of the budget left)", flush=True)
    t0 = time.monotonic()
    try:
        r = fn(ctx)
        p = r if isinstance(r, Part) else Part(name, data=r or {})
    except Exception as e:
        traceback.print_exc()
        p = Part(name, 'failed', note=f"{type(e).__name__}: {e}")
    p.seconds = p.seconds or time.monotonic() - t0
    release_memory()
    print(f"[gpu-check] {name}: {p.status} in {p.seconds:.0f} s (host peak memory so far {peak_rss_gib():.2f} GiB) {p.note}", flush=True)
    return p

def release_memory():
    "Collect garbage and hand freed heap memory back to the system (glibc), so that the next part starts from less."
    gc.collect()
    try:
        import ctypes
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError): pass

def peak_rss_gib()->float:
    "This process's peak resident memory (VmHWM), GiB."
    try: return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')) / 2**20
    except (OSError, StopIteration): return float('nan')

def exit_code(results:dict, checks:list)->int:
    "1: a part failed or an enforced check was missed; 2: nothing failed, but a part was skipped for the budget; 0: all ran and met."
    if any(p.status == 'failed' for p in results.values()) or any(c.ok is False and c.enforced for c in checks): return 1
    return 2 if any(p.status == 'skipped' and p.budget for p in results.values()) else 0

def notebooks_skip_note(cuda:bool, cpu_test:bool)->str|None:
    "Why the `cuda` notebook cells do not run here (None: they run)."
    nbs = ', '.join(f"nbs/{n}.ipynb" for n in CUDA_NBS)
    if not cuda: return f"skipped: no CUDA GPU here (`torch.cuda.is_available()` is False); on a CUDA machine this runs `nbdev-test --flags cuda` on {nbs}"
    if cpu_test: return f"skipped: `--cpu-test` measures on the CPU; without it this runs `nbdev-test --flags cuda` on {nbs}"
    return None

# ---------------------------------------------------------------- part 1: the cuda notebook cells

def start_notebooks(log:Path):
    "Start `nbdev-test --flags cuda` on the three notebooks in the background (own process group); returns the Popen."
    exe = Path(sys.executable).with_name('nbdev-test')
    cmd = [str(exe) if exe.exists() else 'nbdev-test', '--flags', 'cuda', '--n-workers', str(len(CUDA_NBS)), '--do-print', '--timing',
           '--file-re', r'^(' + '|'.join(CUDA_NBS) + r')\.ipynb$']
    f = open(log, 'w')
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    p.log, p.logf, p.t0, p.cmd = log, f, time.monotonic(), cmd
    return p

def finish_notebooks(p, timeout:float)->Part:
    "Wait for the notebooks at most `timeout` seconds (then stop them: failed); passed when nbdev-test exits 0."
    try: rc = p.wait(timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGTERM)                       # the process group this script started
        try: p.wait(timeout=20)
        except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait()
        rc = None
    p.logf.close()
    secs = time.monotonic() - p.t0
    tail = _tail(p.log)
    if rc is None: return Part('notebooks', 'failed', secs, f"stopped after {secs:.0f} s to keep the time budget; last output: {tail}")
    if rc: return Part('notebooks', 'failed', secs, f"`nbdev-test --flags cuda` exited {rc}: {tail}")
    import torch
    note = f"{len(CUDA_NBS)} notebooks passed with `--flags cuda` ({', '.join(CUDA_NBS)})"
    if torch.cuda.device_count() < 2: note += "; 91_ddp's two-GPU cell needs two GPUs and only says so on one"
    return Part('notebooks', 'ok', secs, note)

def _tail(path, n=600)->str:
    try: t = Path(path).read_text(errors='replace')
    except OSError: return ''
    return ' '.join(t[-n:].split())

# ---------------------------------------------------------------- data for part 3 (and the loader in part 2)

def _draw(key):
    "One phantom, as `covseg.synth` draws it (in a worker process)."
    from covseg import synth
    return synth._phantom(*key)

@contextmanager
def prefetched_phantoms(n:int, seed:int, size, lesions, workers:int):
    """`covseg.synth.write_ricord` draws each phantom (half its time at full size) just before writing it, one after the
    other: draw them ahead in `workers` processes and hand them over. Same data either way (each phantom is a function of
    its seed); a phantom it asks for under other seeds than these is drawn by it, as without this."""
    from covseg import synth
    if workers <= 1 or n <= 1: yield; return
    import multiprocessing as mp
    keys = [('ricord', size, seed * 1000 + 500 + i, lesions) for i in range(n)]    # the seeds write_ricord draws from
    with mp.get_context('spawn').Pool(min(workers, n)) as pool:
        jobs = {k: pool.apply_async(_draw, (k,)) for k in keys}
        orig = synth._phantom
        def fetch(dataset, size, seed, lesions=None, lesion_mm=None):
            j = jobs.pop((dataset, size, seed, lesions), None) if lesion_mm is None else None   # drawn ahead: the default radii only
            return orig(dataset, size, seed, lesions, lesion_mm) if j is None else j.get()
        synth._phantom = fetch
        try: yield
        finally: synth._phantom = orig

def make_data(root:Path, S:Sizes, seed:int=0)->dict:
    "Synthetic RICORD studies (the only dataset training reads) under root/data, prepared into root/cache at both grids."
    from covseg.synth import write_ricord, mark_synthetic
    from covseg.preprocess import prepare
    lesions = tuple(S.lesions)
    t0 = time.monotonic()
    with prefetched_phantoms(S.cases, seed, S.size, lesions, S.workers):
        write_ricord(root/'data'/'ricord', S.cases, seed, S.size, lesions)
    mark_synthetic(root/'data'/'ricord', cases=S.cases, seed=seed, size=S.size, lesions=list(lesions))
    t1 = time.monotonic()
    man, failures = prepare(root/'data', root/'cache', grids=[tuple(g) for g in S.grids])
    if failures: raise RuntimeError(f"prepare failed for {len(failures)} case(s): {failures[0]}")
    split = man[man.dataset == 'ricord'].split.value_counts().to_dict()
    if not split.get('train') or not split.get('tune'): raise RuntimeError(f"no train/tune split to train on: {split}")
    from covseg.synth import SIZES
    shape = SIZES[S.size]['ricord'] if isinstance(S.size, str) else S.size
    return dict(cache=str(root/'cache'), synth_s=t1 - t0, prepare_s=time.monotonic() - t1, train=int(split['train']),
                tune=int(split['tune']), shape='x'.join(map(str, shape)))

# ---------------------------------------------------------------- part 2: the training step

def part_step(ctx)->dict:
    import bench_train
    S, out = ctx.S, {}
    for k, (grid, bs) in enumerate(zip(S.grids, S.bs), 1):
        out[k] = bench_train.stage_step(grid, bs, S.device, n=S.step_n, loader_n=S.loader_n, cache=ctx.cache, warmup=S.warmup)
        print(f"[gpu-check] stage {k}:", {a: round(b, 4) if isinstance(b, float) else b for a, b in out[k].items()}, flush=True)
    return out

# ---------------------------------------------------------------- part 3: the shortened paper profile

def train_config(S:Sizes):
    "The `paper` profile with the epochs (and, for the CPU test, grids and batch sizes) of `S`; no pretrained encoder."
    from covseg.train import get_config, PROFILES
    p = PROFILES['paper']
    s1 = replace(p['stage1'], grid=tuple(S.grids[0]), bs=S.bs[0], frozen_epochs=S.epochs[0], epochs=S.epochs[1])
    s2 = replace(p['stage2'], grid=tuple(S.grids[1]), bs=S.bs[1], epochs=S.epochs[2])
    return get_config('paper', stage1=s1, stage2=s2, pretrained=False, max_batches=S.max_batches)

def _timer_cb(deadline:float):
    "A fastai callback that times every epoch (validation and checkpoint included) and stops before one would end past `deadline`."
    from fastai.callback.core import Callback, CancelFitException
    class EpochTimer(Callback):
        order = 100                           # after EpochCheckpoint (60): its writing counts
        def __init__(self): self.times, self.stopped = [], False
        def before_epoch(self):
            est = self.times[-1] if self.times else 0.
            if self.times and time.monotonic() + est > deadline: self.stopped = True; raise CancelFitException()
            self.t0 = time.monotonic()
        def after_epoch(self): self.times.append(time.monotonic() - self.t0)
    return EpochTimer()

def part_train(ctx)->dict:
    import pandas as pd, torch
    from covseg.train import train_stage, write_data_info
    from covseg.run import RunDir
    S, run = ctx.S, Path(ctx.work)/'run'
    cfg = train_config(S)
    run.mkdir(parents=True, exist_ok=True)
    RunDir(run).write_config(cfg)                                            # as `covseg.train.train` does
    write_data_info(cfg, ctx.cache, run)
    cuda = torch.device(S.device).type == 'cuda'
    out = dict(planned=(S.epochs[0] + S.epochs[1], S.epochs[2]), train=ctx.data.get('train'), tune=ctx.data.get('tune'))
    init = None
    for k, share in ((1, 0.55), (2, 1.0)):                                    # stage 1: 55 % of the time left for training, stage 2: the rest
        cb = _timer_cb(time.monotonic() + share * max(ctx.budget.left() - ctx.reserve(), 0.))
        if cuda: torch.cuda.synchronize(); torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
        t0 = time.monotonic()
        summ = train_stage(cfg, k, ctx.cache, run, device=S.device, init=init, quiet=True, cbs=[cb])
        log = pd.read_csv(RunDir(run).log(k))
        out[k] = dict(seconds=time.monotonic() - t0, epoch_s=cb.times, stopped=cb.stopped, summary=summ,
                      peak_gib=torch.cuda.max_memory_allocated() / 2**30 if cuda else float('nan'),
                      log={c: log[c].tolist() for c in log.columns if c in ('phase', 'train_loss', 'valid_loss', 'dice', 'soft_dice')})
        del cb; init = None; release_memory()
        if k == 1: init = torch.load(RunDir(run).weights(1), map_location='cpu', weights_only=True)
    return out

MIN_DICE = 0.1   # a network that predicts all background scores 0, all infiltrate about 2|G|/N (a few %): neither is learning

def learning_checks(tr:dict, k:int)->tuple:
    "(loss falls, Dice rises) of stage `k`: last epoch's training loss below the first's; best tuning Dice after the first epoch above the first's and above 0.1."
    lg = tr[k]['log']; loss, dice = lg['train_loss'], [d if d == d else -1. for d in lg['dice']]    # NaN (empty tuning masks) counts as lowest
    if len(loss) < 2: return None, None
    return loss[-1] < loss[0], max(dice[1:]) > max(dice[0], MIN_DICE)

# ---------------------------------------------------------------- part 4: inference

def part_infer(ctx)->dict:
    import bench_infer
    rows = bench_infer.gpu_rows(ctx.S.infer, ctx.S.device, big=None, tta=False)
    return dict(rows=rows)

# ---------------------------------------------------------------- the section

def _hms(s:float)->str:
    s = int(round(s)); h, m = divmod(s // 60, 60)
    return f"{h} h {m} min" if h else f"{m} min {s % 60} s"

def ctx_cache(results)->bool: return bool(results.get('data') and results['data'].status == 'ok')

def _cell(s)->str: return str(s).replace('|', '\\|').replace('\n', ' ')

def _not_ok(res)->str: return _cell(f"{res.status}: {res.note}" if res else 'not run: ')   # the line of a part that did not succeed

def _mem(g:float)->str: return '—' if g != g else f"{g:.2f} GiB ({g * 2**30 / 1e9:.2f} GB)"

def checks(results:dict, S:Sizes)->list:
    "The checks against the targets, from whatever the parts measured (a part that did not run leaves its checks unmeasured)."
    out, en = [], S.enforce
    nb = results.get('notebooks')
    out.append(Check("`cuda` notebook cells pass", nb.status if nb else 'not run', 'pass', None if nb is None or nb.status in ('skipped', 'not run')
                     else nb.status == 'ok', True))
    st = results['step'].data if results.get('step') and results['step'].status == 'ok' else {}
    s2 = st.get(2)
    out.append(Check("stage 2 peak GPU memory, training step (`max_memory_allocated`)", _mem(s2['peak_gib']) if s2 else '—', f"< {MEM_TARGET_GB:.0f} GB",
                     None if not s2 or s2['peak_gib'] != s2['peak_gib'] else s2['peak_gib'] * 2**30 < MEM_TARGET_GB * 1e9, en))
    for k in (1, 2):
        r = st.get(k)
        out.append(Check(f"stage {k}: the loader's share of the step", f"{100 * r['loader_share']:.0f} %" if r else '—',
                         f"< {100 * LOADER_TARGET:.0f} %", None if not r else r['loader_share'] < LOADER_TARGET, en))
    for k in (1, 2):
        r = st.get(k)
        out.append(Check(f"stage {k}: epoch of 100 volumes with the covseg loader", f"{r['epoch100_loader_s']:.1f} s" if r else '—',
                         f"< {PAPER_EPOCH_S[k - 1]:.0f} s (the paper, RTX 2080 Ti)", None if not r else r['epoch100_loader_s'] < PAPER_EPOCH_S[k - 1], en))
    tr = results['train'].data if results.get('train') and results['train'].status == 'ok' else {}
    for k in (1, 2):
        falls, rises = learning_checks(tr, k) if k in tr else (None, None)
        lg = tr[k]['log'] if k in tr else None
        out.append(Check(f"stage {k}: training loss falls (last epoch < first)", f"{lg['train_loss'][0]:.3f} → {lg['train_loss'][-1]:.3f}" if lg else '—',
                         'falls', falls, en))
        soft = lg.get('soft_dice') if lg else None                     # the probabilities' Dice, where covseg logs it
        out.append(Check(f"stage {k}: tuning Dice rises (best later epoch > first, and > {MIN_DICE})",
                         (f"{lg['dice'][0]:.3f} → best {max(lg['dice']):.3f}" + (f" (soft Dice {soft[0]:.3f} → best {max(soft):.3f})" if soft else ''))
                         if lg and len(lg['dice']) else '—', 'rises', rises, en))
    return out

def render(results:dict, S:Sizes, meta:dict)->list:
    "The lines of the GPU section (without its heading)."
    test = S.device == 'cpu'
    L = []
    if test:
        L += [f"**CPU test of `make gpu-check` (`bench/gpu_check.py --cpu-test`), not GPU figures**: tiny synthetic studies and grids, "
              f"run {meta['date']} on {meta['machine']}.", '']
    else:
        L += [f"Measured {meta['date']} on **{meta['card']}** ({meta['card_mem']}, CUDA {meta['cuda']}); host: {meta['machine']}; "
              f"by `make gpu-check` (`bench/gpu_check.py`, budget {meta['budget']:.0f} s, took {meta['took']:.0f} s).", '']
    L += ["All data are **synthetic** phantoms: speed and memory figures and a check that training learns, never accuracy "
          "figures of the paper. The encoder is **not pretrained** (`pretrained=False`): the GPU machine has no internet and no "
          "Kinetics-400 weights, where the paper starts from them.", '',
          '### Parts', '', '| part | result | seconds | note |', '|---|---|---|---|']
    for name in PARTS:
        p = results.get(name) or Part(name, 'not run')
        note = p.note
        if name == 'data' and p.status == 'ok':
            d = p.data
            note = (f"{S.cases} synthetic RICORD studies ({d['shape']} DICOM, {S.lesions[0]}-{S.lesions[1]} infiltrates each) written in "
                    f"{d['synth_s']:.0f} s, converted and cached at {' and '.join('x'.join(map(str, g)) for g in S.grids)} in {d['prepare_s']:.0f} s; "
                    f"{d['train']} training, {d['tune']} tuning")
        L.append(f"| {TITLES[name]} | {'**' + p.status + '**' if p.status == 'failed' else p.status} | {p.seconds:.0f} | {_cell(note)} |")
    # part 2
    step = results.get('step')
    L += ['', f"### Training step per stage{' (mixed precision)' if not test else ''}", '']
    if step and step.status == 'ok':
        L += [f"{'fp16 autocast + GradScaler' if not test else 'float32 on the CPU'}, median of {S.step_n} steps after {S.warmup} warm-up steps "
              f"with a fixed batch; the step with the covseg loader draws its batches from the {'part-3 cache' if ctx_cache(results) else 'small studies of its own'} "
              f"(batched augmentation on the device), median of {S.loader_n}.", '',
              '| stage | input | step | samples/s | achieved TFLOP/s | epoch of 100 volumes | peak GPU memory | step with covseg loader | loader share of the step | epoch of 100 volumes with the loader |',
              '|---|---|---|---|---|---|---|---|---|---|']
        for k, r in step.data.items():
            L.append(f"| stage {k} | {r['bs']}x1x{'x'.join(map(str, r['grid']))} | {1000 * r['step_s']:.0f} ms | {r['samples_s']:.1f} | {r['tflops']:.1f} | "
                     f"{r['epoch100_s']:.1f} s | {_mem(r['peak_gib'])} | {1000 * r['loader_step_s']:.0f} ms | {100 * r['loader_share']:.0f} % | {r['epoch100_loader_s']:.1f} s |")
        if all(k in step.data for k in (1, 2)):
            tot = sum(n * step.data[k]['epoch100_loader_s'] for k, n in zip((1, 2), PAPER_EPOCHS))
            L += ['', f"The paper's schedule ({PAPER_EPOCHS[0]} stage-1 and {PAPER_EPOCHS[1]} stage-2 epochs of 100 volumes, tuning passes aside) "
                  f"would take about {_hms(tot)} here; the paper: {PAPER_TOTAL} on an RTX 2080 Ti (45 s and 2:30 min per epoch)."]
    else: L.append(_not_ok(step))
    # part 3
    tr = results.get('train')
    L += ['', "### Paper profile, shortened", '']
    if tr and tr.status == 'ok':
        d = tr.data
        L += [f"`get_config('paper', pretrained=False, ...)` with {S.epochs[0]} frozen + {S.epochs[1]} stage-1 epochs and {S.epochs[2]} stage-2 epochs"
              f"{f', at most {S.max_batches} batches per epoch' if S.max_batches else ''}; {d['train']} training and {d['tune']} tuning volumes; "
              "`covseg.train.train_stage` per stage (stage 2 from stage 1's best weights), stopped early where the budget ends.", '',
              '| stage | input | epochs run (planned) | training loss first → last | tuning Dice first → best (epoch) | seconds per epoch (median; tuning pass and checkpoint included) | stage seconds | peak GPU memory |',
              '|---|---|---|---|---|---|---|---|']
        for k in (1, 2):
            r = d[k]; lg = r['log']; dice = [x if x == x else float('nan') for x in lg['dice']]
            best = r['summary']['best_dice']; be = r['summary']['best_epoch']
            eps = sorted(r['epoch_s'])
            L.append(f"| stage {k} | {S.bs[k - 1]}x1x{'x'.join(map(str, S.grids[k - 1]))} | {len(lg['train_loss'])} ({d['planned'][k - 1]})"
                     f"{', stopped by the budget' if r['stopped'] else ''} | {lg['train_loss'][0]:.3f} → {lg['train_loss'][-1]:.3f} | "
                     f"{dice[0]:.3f} → {best:.3f} ({be}) | {eps[len(eps) // 2] if eps else float('nan'):.1f} s | {r['seconds']:.0f} s | {_mem(r['peak_gib'])} |")
    else: L.append(_not_ok(tr))
    # part 4
    inf = results.get('infer')
    L += ['', "### Whole-study inference", '']
    if inf and inf.status == 'ok':
        c = S.infer
        L += [f"`covseg.infer.predict` on one synthetic {'x'.join(map(str, c['shape']))} study ({'x'.join(map(str, c['spacing']))} mm), the paper's "
              f"R3DUNet with random weights at {'x'.join(map(str, c['grid']))}; sliding mode at {'x'.join(map(str, c['slide_spacing']))} mm, overlap 0.5; "
              "autocast, after one warm-up run, no TTA, no file I/O (`bench_infer.gpu_rows`).", '',
              '| what | seconds | peak GPU memory |', '|---|---|---|']
        L += [f"| {w} | {t:.2f} | {_mem(m)} |" for w, t, m in inf.data['rows']]
    else: L.append(_not_ok(inf))
    # checks
    L += ['', '### Checks', '', '| check | measured | target | result |', '|---|---|---|---|']
    for c in meta['checks']:
        res = 'not measured' if c.ok is None else ('**met**' if c.ok else '**missed**')
        if not c.enforced and c.ok is not None: res += ' (not enforced: CPU test)'
        L.append(f"| {c.what} | {_cell(c.measured)} | {c.target} | {res} |")
    L += ['', f"Exit status {meta['rc']}."]
    return L

def write_section(lines:list, path)->Path:
    """Replace the GPU section of `path` (a BENCHMARKS.md) with `lines` (or add it at the end), leaving everything else as it is.
    Its own pattern, anchored at a line's start: `bench_data.replace_section` would also match the '### GPU' sub-sections of others."""
    path = Path(path)
    text = path.read_text() if path.exists() else '# Benchmarks\n'
    sec = '\n'.join([HEAD, ''] + list(lines)).rstrip('\n') + '\n'
    pat = re.compile(r'^' + re.escape(HEAD) + r'[ \t]*\n.*?(?=^## |\Z)', re.S | re.M)
    text = pat.sub(lambda m: sec + '\n', text, count=1) if pat.search(text) else text.rstrip('\n') + '\n\n' + sec
    path.write_text(text.rstrip('\n') + '\n')
    return path

# ---------------------------------------------------------------- main

class Ctx:
    "What the parts share."
    def __init__(self, S, work, budget, parts):
        self.S, self.work, self.budget, self.parts, self.cache, self.data = S, Path(work), budget, parts, None, {}
    def reserve(self)->float:
        "Seconds to keep for the parts after training."
        return self.S.need['infer'] + 5 if 'infer' in self.parts else 5.

def main(argv=None)->int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--budget', type=float, help='total seconds (default 480; 600 with --cpu-test)')
    ap.add_argument('--parts', default=','.join(PARTS), help=f"comma-separated subset of {','.join(PARTS)} (train needs data)")
    ap.add_argument('--cpu-test', action='store_true', help='the same code at tiny sizes on the CPU; writes to --out, not BENCHMARKS.md')
    ap.add_argument('--out', help='file whose GPU section to write (default: BENCHMARKS.md; with --cpu-test a file in the temp folder)')
    ap.add_argument('--workdir', help='where data and runs go (default: a temporary folder, removed at the end)')
    ap.add_argument('--cases', type=int, help='synthetic RICORD studies for part 3 (default 10; 6 with --cpu-test)')
    ap.add_argument('--epochs', help='part 3: stage-1 frozen, stage-1 unfrozen, stage-2 epochs, e.g. 2,80,40 (the default)')
    a = ap.parse_args(argv)
    import torch
    from bench_data import machine, BENCHMARKS
    S = sizes(a.cpu_test)
    if a.cases is not None: S = replace(S, cases=a.cases)
    if a.epochs is not None:
        try: S = replace(S, epochs=tuple(int(v) for v in a.epochs.split(',')))
        except ValueError: S = None
        if S is None or len(S.epochs) != 3 or min(S.epochs) < 0 or S.epochs[1] + S.epochs[0] < 1 or S.epochs[2] < 1:
            ap.error(f"--epochs: three counts FROZEN,STAGE1,STAGE2 with at least one epoch per stage, not {a.epochs!r}")
    parts = [p.strip() for p in a.parts.split(',') if p.strip()]
    if bad := set(parts) - set(PARTS): ap.error(f"unknown part(s) {sorted(bad)}; choose from {PARTS}")
    if 'train' in parts and 'data' not in parts: parts.append('data')
    cuda = torch.cuda.is_available()
    if not cuda and not a.cpu_test:
        print("no CUDA GPU here (torch.cuda.is_available() is False): `make gpu-check` needs one; nothing was measured and "
              "BENCHMARKS.md is left as it is (`--cpu-test` runs the same code on the CPU at tiny sizes)")
        return 2
    out = Path(a.out) if a.out else (Path(tempfile.gettempdir())/'covseg-gpu-check-cpu-test.md' if a.cpu_test else BENCHMARKS)
    budget = Budget(a.budget if a.budget is not None else S.budget)
    work = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix='covseg-gpu-check-'))
    work.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(S, work, budget, parts)
    results, nb = {}, None
    try:
        # 1. the cuda notebook cells, in the background while the data are made
        if 'notebooks' not in parts: results['notebooks'] = Part('notebooks', 'not run', note='not asked for (`--parts`)')
        elif (why := notebooks_skip_note(cuda, a.cpu_test)) is not None: results['notebooks'] = Part('notebooks', 'skipped', note=why)
        elif (why := budget.skip_note(S.need['notebooks'])) is not None: results['notebooks'] = Part('notebooks', 'skipped', note=why, budget=True)
        else: print('[gpu-check] notebooks: `nbdev-test --flags cuda` in the background', flush=True); nb = start_notebooks(work/'nbdev-test.log')
        results['data'] = run_part('data', lambda c: make_data(c.work, c.S), ctx, budget, parts, S.need['data'])
        if results['data'].status == 'ok': ctx.data, ctx.cache = results['data'].data, results['data'].data['cache']
        if nb is not None:
            later = sum(S.need[k] for k in ('step', 'train', 'infer') if k in parts)
            results['notebooks'] = finish_notebooks(nb, budget.left() - later); nb = None
        results['step'] = run_part('step', part_step, ctx, budget, parts, S.need['step'])
        if 'train' in parts and ctx.cache is None:
            d = results['data']
            results['train'] = Part('train', 'failed' if d.status == 'failed' else 'skipped', note=f"no data: the data part {d.status}", budget=d.budget)
        else: results['train'] = run_part('train', part_train, ctx, budget, parts, S.need['train'])
        results['infer'] = run_part('infer', part_infer, ctx, budget, parts, S.need['infer'])
    finally:
        if nb is not None: finish_notebooks(nb, 0)                       # interrupted: stop them
        for k in PARTS: results.setdefault(k, Part(k, 'failed', note='interrupted'))
        cks = checks(results, S)
        rc = exit_code(results, cks)
        meta = dict(date=time.strftime('%Y-%m-%d'), machine=machine(), budget=budget.total, took=budget.used(), checks=cks, rc=rc,
                    torch=torch.__version__, cuda=torch.version.cuda)
        if cuda and not a.cpu_test:
            meta.update(card=torch.cuda.get_device_name(0), card_mem=f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
        lines = render(results, S, meta)
        write_section(lines, out)
        print('\n'.join([HEAD, ''] + lines)); print(f"[gpu-check] written to {out}; exit status {rc}", flush=True)
        if not a.workdir: shutil.rmtree(work, ignore_errors=True)
    return rc

if __name__ == '__main__': sys.exit(main())
