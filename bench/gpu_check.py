"""`make gpu-check`: everything covseg wants to know from a CUDA machine, in one command and a hard time limit.

Written for the moment a session is lent a GPU machine: one H100 or H200, 16 cores, no network, about 15 minutes of
device time in all (machine start included), one command of at most 10 minutes. What runs there is
`bench/gpu_check.sh` (it installs the wheel kit `make gpu-kit` built, `.whl/`, and calls this file with the image's own
`python3`); the whole check ends within `--budget` seconds (default 450) so that a second try fits. In this order:

1. the `cuda`-flagged notebook cells: `nbdev-test --flags cuda` on nbs/12_loaders and nbs/31_infer (and 91_ddp where
   there are two GPUs: its only `cuda` cell needs two), in the background while the CPU makes the data of part 3;
2. data for part 3: twelve synthetic RICORD studies, phantoms drawn in parallel processes, at 96x256x256 (the
   network sees whole volumes resized to the paper's grids, so a smaller source changes nothing it sees), cached at
   the paper's grids 18x112x112 and 20x256x256;
3. the paper-size training step per stage with mixed precision and `cudnn.benchmark` (`bench_train.stage_step`):
   step time, samples/s, achieved TFLOP/s against the step's FLOP count, the epoch of 100 volumes, peak
   `max_memory_allocated` and `max_memory_reserved`, and the covseg loader's share of the step (full batches only);
4. the paper's 11 GB card: one training step per stage with the process's GPU memory capped at 10.5 GB
   (`torch.cuda.set_per_process_memory_fraction`): does the paper's setting fit an RTX 2080 Ti?
5. a shortened run of the `paper` profile (both stages, fewer epochs of about 100 volumes each, `pretrained=False`:
   the machine has no Kinetics-400 weights), the run folder on a RAM disk, each epoch's time split into training
   batches, tuning pass and checkpoint writing; training loss must fall and tuning Dice rise;
6. whole-study inference (300x512x512) in both modes, `paper` and `sliding` (`bench_infer.gpu_rows`).

Every part runs under its own hard cap (an alarm: a part that overruns is stopped and marked failed) and the whole
run under a watchdog; the results are written after every part (the Markdown section into `--out`, a JSON beside it),
so that a run killed at any moment still leaves what finished; SIGTERM and SIGINT stop the run and write what there
is. A part that would not fit into what is left of `--budget` is skipped with a note. A missing program fails its own
part, not the run. Exit status: 0 when every part ran and every enforced check was met, 1 when a part failed or an
enforced check was missed, 2 when nothing failed but a part was skipped for the budget (or there is no CUDA GPU: then
nothing is written). Enforced: the `cuda` cells pass, both stages learn, both stages' steps fit the 11 GB cap; the
speed figures are reported against the paper's (an H100 is not the paper's card), not enforced.

`--cpu-test` runs the same code on the CPU at tiny sizes and writes the section into `--out` (default: a file in the
temporary folder), never into BENCHMARKS.md; targets are shown but not enforced. With `--nbs`, the notebooks part
runs those notebooks on the CPU too (without `--flags cuda`): the rehearsal (`make gpu-rehearsal`) uses it to prove
that the kit holds the notebook runner and everything the notebooks import. nbs/92_gpu_check.ipynb tests this file.

Run: `make gpu-check` or `bash bench/gpu_check.sh [ARGS]` (on a lent machine, see README), or
`.venv/bin/python bench/gpu_check.py [--budget 450] [--parts step,memcap]`."""
import argparse, gc, json, math, os, re, signal, subprocess, sys, tempfile, threading, time, shutil, traceback
from contextlib import contextmanager
from dataclasses import dataclass, field, replace, asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path: sys.path.insert(0, str(HERE))
# Only the standard library at import time: the worker processes that draw phantoms (spawned) import this file again.

HEAD = '## GPU'
PARTS = ('notebooks', 'data', 'step', 'memcap', 'train', 'infer')
TITLES = dict(notebooks='1. `cuda` notebook cells', data='2. data for part 5', step='3. training step per paper stage',
              memcap="4. the paper's 11 GB card", train='5. paper profile, shortened', infer='6. whole-study inference')
PAPER_EPOCH_S = (45., 150.)                  # the paper's seconds per epoch on an RTX 2080 Ti, stage 1 and stage 2
PAPER_TOTAL = '10 h 49 min'
PAPER_EPOCHS = (10 + 200, 200)               # the paper's schedule: stage 1 10 frozen + 200, stage 2 200 epochs
PAPER_TUNE = 17                              # the paper's tuning studies, scored after every epoch
EPOCH_VOLUMES = 100                          # the paper's epoch: about 100 training volumes
CAP_GB = 10.5                                # GPU memory cap (1e9 bytes) standing for the paper's 11 GB RTX 2080 Ti
LOADER_TARGET = 0.20                         # covseg's target: the loader under 20 % of a training step
GRACE = 20.                                  # seconds past the budget after which the watchdog ends the run
# what the GPU section says until a GPU run has replaced it
NO_GPU_YET = ["No GPU figure exists yet: no session has been lent a CUDA GPU. On a lent machine (README, *The GPU check*): "
              "`make gpu-kit` here, then there, with `.whl` carried and a time limit of 560 s, `bash bench/gpu_check.sh`; it runs "
              "`bench/gpu_check.py` in at most 8 minutes and returns this file with this section replaced: the `cuda`-flagged notebook "
              "cells, the training step of both paper stages with mixed precision (step time, achieved TFLOP/s, the epoch of 100 volumes, "
              "peak GPU memory allocated and reserved, the loader's share of the step), one step per stage under a 10.5 GB memory cap "
              "(does the paper's setting fit its 11 GB RTX 2080 Ti?), both stages of a shortened `paper` profile on synthetic studies "
              "(no pretrained encoder: the machine is offline), whole-study inference in both modes, with the card's name and the checks. "
              "The paper's figures on an RTX 2080 Ti: 45 s per stage-1 epoch, 2:30 min per stage-2 epoch, 10 h 49 min in total."]
# the CPU test's study: 2 patches in sliding mode (bench_infer.FULL is the GPU's: 300x512x512)
TINY_STUDY = dict(shape=(24, 64, 64), spacing=(12.5, 5.6, 5.6), grid=(8, 32, 32), slide_spacing=(25.0, 11.2, 11.2))

def notebooks_for(gpus:int)->tuple:
    "The notebooks whose `cuda` cells run on a machine with `gpus` GPUs (91_ddp's only `cuda` cell needs two)."
    return ('12_loaders', '31_infer') + (('91_ddp',) if gpus >= 2 else ())

@dataclass
class Sizes:
    "What a run measures at: the paper's sizes on the GPU, or tiny ones on the CPU (`--cpu-test`); the code is the same."
    device: str
    cases: int              # synthetic RICORD studies (train + tune split by patient)
    size: object            # synthetic study size (z, y, x), or 'full' (RICORD 250x512x512)
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
    cap: dict               # seconds each part may take at most: then it is stopped (the notebooks: from their start)
    workers: int            # processes drawing phantoms ahead of `write_ricord`
    enforce: bool           # does a missed target fail the check?
    budget: float           # default --budget

def sizes(cpu_test:bool=False)->Sizes:
    import bench_infer
    if cpu_test:
        return Sizes('cpu', 6, (16, 64, 64), (6, 10), ((8, 32, 32), (8, 48, 48)), (2, 1), (1, 1, 1), 1, 1, 1, 0, TINY_STUDY,
                     need=dict(notebooks=1, data=5, step=10, memcap=5, train=15, infer=5),
                     cap=dict(notebooks=420, data=120, step=120, memcap=120, train=180, infer=120),
                     workers=2, enforce=False, budget=900.)
    return Sizes('cuda', 12, (96, 256, 256), (6, 10), ((18, 112, 112), (20, 256, 256)), (6, 1), (2, 30, 12), None, 5, 8, 2,
                 bench_infer.FULL, need=dict(notebooks=60, data=30, step=30, memcap=15, train=60, infer=30),
                 cap=dict(notebooks=150, data=90, step=60, memcap=40, train=200, infer=60),
                 workers=max(1, min(12, (os.cpu_count() or 2) - 4)), enforce=True, budget=450.)

# ---------------------------------------------------------------- budget, parts, caps, checks

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
    status: str = 'ok'       # ok | failed | skipped | not run | running (started, no result yet)
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

class PartTimeout(BaseException):
    "A part ran past its hard cap (raised in the main thread by the alarm; a BaseException, so no `except Exception` in a part swallows it)."

class Stopped(BaseException):
    "SIGTERM or SIGINT arrived: stop, write what there is."

@contextmanager
def hard_cap(seconds:float):
    "Raise `PartTimeout` in the main thread once `seconds` have passed inside this block (SIGALRM; main thread only)."
    def alarm(signum, frame): raise PartTimeout(seconds)
    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, max(float(seconds), 0.01))
    try: yield
    finally: signal.setitimer(signal.ITIMER_REAL, 0); signal.signal(signal.SIGALRM, old)

def run_part(name, fn, ctx, parts=None)->Part:
    """Run part `name` (`fn(ctx)` returns its data dict, or a Part) unless deselected or out of budget, under its hard cap;
    a failure, an overrun or a stop is recorded (a stop then re-raised), and the results are saved before and after."""
    budget, S, rep = ctx.budget, ctx.S, ctx.report
    if name not in (ctx.parts if parts is None else parts): return rep.set(Part(name, 'not run', note='not asked for (`--parts`)'))
    if (why := budget.skip_note(S.need[name])) is not None:
        print(f"[gpu-check] {name}: {why}", flush=True); return rep.set(Part(name, 'skipped', note=why, budget=True))
    cap = min(S.cap[name], max(budget.left(), 1.))
    print(f"[gpu-check] {name} ({budget.left():.0f} s of the budget left, hard cap {cap:.0f} s)", flush=True)
    t0 = time.monotonic()
    ctx.deadline = t0 + cap                                           # a part that can stop early itself stops before its cap
    rep.set(Part(name, 'running', note='started; no result: the run ended while this part ran'))
    try:
        with hard_cap(cap): r = fn(ctx)
        p = r if isinstance(r, Part) else Part(name, data=r or {})
    except PartTimeout:
        p = Part(name, 'failed', note=f"stopped at its hard cap of {cap:.0f} s")
    except Stopped as e:
        rep.set(Part(name, 'failed', time.monotonic() - t0, f"interrupted by {e}")); raise
    except Exception as e:
        traceback.print_exc()
        p = Part(name, 'failed', note=f"{type(e).__name__}: {e}")
    p.seconds = p.seconds or time.monotonic() - t0
    release_memory()
    print(f"[gpu-check] {name}: {p.status} in {p.seconds:.0f} s (host peak memory so far {peak_rss_gib():.2f} GiB) {p.note}", flush=True)
    return rep.set(p)

def release_memory():
    "Collect garbage, hand freed heap memory back to the system (glibc) and cached GPU memory back to the driver."
    gc.collect()
    try:
        import ctypes
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError): pass
    if 'torch' in sys.modules and sys.modules['torch'].cuda.is_available(): sys.modules['torch'].cuda.empty_cache()

def peak_rss_gib()->float:
    "This process's peak resident memory (VmHWM), GiB."
    try: return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')) / 2**20
    except (OSError, StopIteration): return float('nan')

def exit_code(results:dict, checks:list)->int:
    "1: a part failed (or never ended) or an enforced check was missed; 2: nothing failed, a part was skipped for the budget; 0: all ran and met."
    if any(p.status in ('failed', 'running') for p in results.values()) or any(c.ok is False and c.enforced for c in checks): return 1
    return 2 if any(p.status == 'skipped' and p.budget for p in results.values()) else 0

# ---------------------------------------------------------------- part 1: the cuda notebook cells

def notebooks_skip_note(cuda:bool, cpu_test:bool, nbs=None)->str|None:
    "Why the notebooks part does not run here (None: it runs): on the CPU test it runs only when notebooks are named (`--nbs`)."
    if cpu_test: return None if nbs else ("skipped: `--cpu-test` measures on the CPU; on a CUDA machine this runs `nbdev-test --flags cuda` on "
                                          f"{', '.join(f'nbs/{n}.ipynb' for n in notebooks_for(1))} (`--nbs` runs named notebooks here, without the flag)")
    if not cuda: return "skipped: no CUDA GPU here (`torch.cuda.is_available()` is False)"
    return None

def find_program(name:str, given=None)->str:
    "`given`, else `name` beside this Python, else on PATH; FileNotFoundError naming where it looked."
    if given is not None:
        if Path(given).is_file() and os.access(given, os.X_OK): return str(given)
        raise FileNotFoundError(f"{given} not found (or not executable)")
    for c in (Path(sys.executable).with_name(name), shutil.which(name)):
        if c and Path(c).is_file() and os.access(c, os.X_OK): return str(c)
    raise FileNotFoundError(f"`{name}` not found beside {sys.executable} nor on PATH (is the kit installed? bench/gpu_check.sh puts it on PATH)")

def start_notebooks(log:Path, nbs, cuda_flag:bool=True, exe=None):
    "Start `nbdev-test [--flags cuda]` on notebooks `nbs` in the background (own process group); returns the Popen."
    cmd = [find_program('nbdev-test', exe)] + (['--flags', 'cuda'] if cuda_flag else []) + [
           '--n-workers', str(len(nbs)), '--do-print', '--timing', '--file-re', r'^(' + '|'.join(nbs) + r')\.ipynb$']
    f = open(log, 'w')
    try: p = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    except BaseException: f.close(); raise
    p.log, p.logf, p.t0, p.cmd, p.nbs, p.cuda_flag = log, f, time.monotonic(), cmd, tuple(nbs), cuda_flag
    return p

def stop_group(p, grace:float=10.):
    "Stop the process group of Popen `p` (SIGTERM, then SIGKILL after `grace` seconds)."
    if p is None or p.poll() is not None: return
    try:
        os.killpg(p.pid, signal.SIGTERM)
        try: p.wait(timeout=grace)
        except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait()
    except ProcessLookupError: pass

def finish_notebooks(p, timeout:float)->Part:
    "Wait for the notebooks at most `timeout` seconds (then stop them: failed); passed when nbdev-test exits 0."
    try: rc = p.wait(timeout=max(timeout, 0.1))
    except subprocess.TimeoutExpired: stop_group(p); rc = None
    p.logf.close()
    secs = time.monotonic() - p.t0
    tail = _tail(p.log)
    what = f"`nbdev-test{' --flags cuda' if p.cuda_flag else ''}` on {', '.join(p.nbs)}"
    if rc is None: return Part('notebooks', 'failed', secs, f"{what} stopped after {secs:.0f} s (its cap or the budget); last output: {tail}")
    if rc: return Part('notebooks', 'failed', secs, f"{what} exited {rc}: {tail}")
    note = f"{what} passed" + ('' if p.cuda_flag else ' on the CPU (the rehearsal: the runner and the notebooks\' imports, no `cuda` cell)')
    if p.cuda_flag and '91_ddp' not in p.nbs: note += "; 91_ddp left out: its only `cuda` cell needs two GPUs"
    return Part('notebooks', 'ok', secs, note)

def _tail(path, n=600)->str:
    try: t = Path(path).read_text(errors='replace')
    except OSError: return ''
    return ' '.join(t[-n:].split())

# ---------------------------------------------------------------- part 2: data for part 5 (and the loader in part 3)

def _draw(key):
    "One phantom, as `covseg.synth` draws it (in a worker process)."
    from covseg import synth
    return synth._phantom(*key)

@contextmanager
def prefetched_phantoms(n:int, seed:int, size, lesions, workers:int):
    """`covseg.synth.write_ricord` draws each phantom (most of its time) just before writing it, one after the other:
    draw them ahead in `workers` processes and hand them over. Same data either way (each phantom is a function of its
    seed); a phantom it asks for under other seeds than these is drawn by it, as without this."""
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
    from covseg.synth import write_ricord, mark_synthetic, SIZES
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
    shape = SIZES[S.size]['ricord'] if isinstance(S.size, str) else S.size
    return dict(cache=str(root/'cache'), synth_s=t1 - t0, prepare_s=time.monotonic() - t1, train=int(split['train']),
                tune=int(split['tune']), shape='x'.join(map(str, shape)), workers=S.workers)

# ---------------------------------------------------------------- part 3: the training step

def part_step(ctx)->dict:
    import bench_train
    S, out = ctx.S, {}
    for k, (grid, bs) in enumerate(zip(S.grids, S.bs), 1):
        out[k] = bench_train.stage_step(grid, bs, S.device, n=S.step_n, loader_n=S.loader_n, cache=ctx.cache, warmup=S.warmup)
        print(f"[gpu-check] stage {k}:", {a: round(b, 4) if isinstance(b, float) else b for a, b in out[k].items()}, flush=True)
    return out

# ---------------------------------------------------------------- part 4: the paper's 11 GB card

def capped_steps(grid, bs, device, cap_bytes:float|None, n:int=2)->dict:
    """Training steps (mixed precision on CUDA) with this process's GPU memory capped at `cap_bytes` (None: no cap): do
    they fit? Peak allocated and reserved GiB; the cap is lifted again at the end."""
    import torch, bench_train
    cuda = torch.device(device).type == 'cuda'
    if cuda:
        torch.cuda.synchronize(); gc.collect(); torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
        if cap_bytes: torch.cuda.set_per_process_memory_fraction(min(cap_bytes / torch.cuda.get_device_properties(0).total_memory, 1.))
    try:
        try: t, fits, err = bench_train.time_steps(grid, bs, device, n=n, amp=cuda, warmup=1), True, ''
        except torch.cuda.OutOfMemoryError as e: t, fits, err = float('nan'), False, str(e).split('\n')[0][:240]
        peak = (torch.cuda.max_memory_allocated() / 2**30, torch.cuda.max_memory_reserved() / 2**30) if cuda else (float('nan'),) * 2
    finally:
        if cuda: gc.collect(); torch.cuda.empty_cache(); torch.cuda.set_per_process_memory_fraction(1.)
    return dict(grid=tuple(grid), bs=bs, fits=fits, step_s=t, peak_gib=peak[0], reserved_gib=peak[1], error=err, capped=bool(cuda and cap_bytes))

def part_memcap(ctx)->dict:
    "One training step per paper stage under the 10.5 GB cap (on the CPU: uncapped, to run the same code)."
    S, out = ctx.S, {}
    for k, (grid, bs) in enumerate(zip(S.grids, S.bs), 1):
        out[k] = capped_steps(grid, bs, S.device, CAP_GB * 1e9)
        print(f"[gpu-check] stage {k} under the cap:", out[k], flush=True)
    return out

# ---------------------------------------------------------------- part 5: the shortened paper profile

def train_config(S:Sizes, n_train:int):
    "The `paper` profile with the epochs (and, for the CPU test, grids and batch sizes) of `S`, epochs of about 100 volumes; no pretrained encoder."
    from covseg.train import get_config, PROFILES
    p, rep = PROFILES['paper'], max(1, math.ceil(EPOCH_VOLUMES / max(n_train, 1)))
    s1 = replace(p['stage1'], grid=tuple(S.grids[0]), bs=S.bs[0], frozen_epochs=S.epochs[0], epochs=S.epochs[1], repeats=rep)
    s2 = replace(p['stage2'], grid=tuple(S.grids[1]), bs=S.bs[1], epochs=S.epochs[2], repeats=rep)
    return get_config('paper', stage1=s1, stage2=s2, pretrained=False, max_batches=S.max_batches)

def _timer_cbs(deadline:float)->list:
    """fastai callbacks that time every epoch, its tuning pass and its checkpoint writing (`EpochCheckpoint`, order 60,
    between the two markers), and stop before an epoch would end past `deadline`. The first is the timer."""
    from fastai.callback.core import Callback, CancelFitException
    class EpochTimer(Callback):
        order = 100
        def __init__(self): self.times, self.valid, self.ckpt, self.stopped = [], [], [], False
        def before_epoch(self):
            if self.times and time.monotonic() + self.times[-1] > deadline: self.stopped = True; raise CancelFitException()
            self.t0 = time.monotonic()
        def before_validate(self): self.tv = time.monotonic()
        def after_validate(self): self.valid.append(time.monotonic() - self.tv)
        def after_epoch(self): self.times.append(time.monotonic() - self.t0)
    timer = EpochTimer()
    class CkptStart(Callback):
        order = 59
        def after_epoch(self): timer.tc = time.monotonic()
    class CkptEnd(Callback):
        order = 61
        def after_epoch(self): timer.ckpt.append(time.monotonic() - timer.tc)
    return [timer, CkptStart(), CkptEnd()]

def ramdisk(min_free_gib:float=8.)->Path|None:
    "/dev/shm when it is there with room for a run's checkpoints (so that part 5 times training, not the disk), else None."
    p = Path('/dev/shm')
    try: return p if p.is_dir() and os.access(p, os.W_OK) and shutil.disk_usage(p).free > min_free_gib * 2**30 else None
    except OSError: return None

def _median(v): v = sorted(v); return v[len(v) // 2] if v else float('nan')

def part_train(ctx)->dict:
    import pandas as pd, torch
    from covseg.train import train_stage, write_data_info
    from covseg.run import RunDir
    S = ctx.S
    shm = ramdisk()
    run = Path(tempfile.mkdtemp(prefix='covseg-gpu-check-run-', dir=shm)) if shm else Path(ctx.work)/'run'
    ctx.run = run
    n_train = ctx.data.get('train') or 1
    cfg = train_config(S, n_train)
    run.mkdir(parents=True, exist_ok=True)
    RunDir(run).write_config(cfg)                                            # as `covseg.train.train` does
    write_data_info(cfg, ctx.cache, run)
    cuda = torch.device(S.device).type == 'cuda'
    out = dict(planned=(S.epochs[0] + S.epochs[1], S.epochs[2]), train=ctx.data.get('train'), tune=ctx.data.get('tune'),
               repeats=cfg.stage1.repeats, ramdisk=bool(shm), run=str(run))
    init = None
    for k, share in ((1, 0.5), (2, 1.0)):                                     # stage 1: half the time left for training, stage 2: the rest
        left = min(ctx.budget.left() - ctx.reserve(), ctx.deadline - time.monotonic() - 10)   # 10 s for the stage's end before the cap
        cbs = _timer_cbs(time.monotonic() + share * max(left, 0.))
        if cuda: torch.cuda.synchronize(); torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
        t0 = time.monotonic()
        summ = train_stage(cfg, k, ctx.cache, run, device=S.device, init=init, quiet=True, cbs=cbs)
        log = pd.read_csv(RunDir(run).log(k)); tm = cbs[0]
        vols = n_train * cfg.stage(k).repeats                                 # training volumes an epoch draws
        out[k] = dict(seconds=time.monotonic() - t0, volumes=min(vols, S.max_batches * S.bs[k - 1]) if S.max_batches else vols, epoch_s=tm.times, valid_s=tm.valid, ckpt_s=tm.ckpt, stopped=tm.stopped, summary=summ,
                      peak_gib=torch.cuda.max_memory_allocated() / 2**30 if cuda else float('nan'),
                      reserved_gib=torch.cuda.max_memory_reserved() / 2**30 if cuda else float('nan'),
                      log={c: log[c].tolist() for c in log.columns if c in ('phase', 'train_loss', 'valid_loss', 'dice', 'soft_dice')})
        del cbs, tm; init = None; release_memory()
        if k == 1: init = torch.load(RunDir(run).weights(1), map_location='cpu', weights_only=True)
    return out

def paper_epoch(r:dict, tune:int)->dict:
    """A stage's median epoch split into training batches, tuning pass and checkpoint, and the epoch the paper ran: 100
    training volumes and a tuning pass over its 17 studies (ours: `tune`), checkpoint writing aside."""
    ep, va, ck = _median(r['epoch_s']), _median(r['valid_s']), _median(r['ckpt_s'])
    tr = ep - va - ck
    return dict(epoch=ep, train=tr, valid=va, ckpt=ck, paper=tr * EPOCH_VOLUMES / max(r['volumes'], 1) + va * PAPER_TUNE / max(tune, 1))

MIN_DICE = 0.1   # a network that predicts all background scores 0, all infiltrate about 2|G|/N (a few %): neither is learning

def learning_checks(tr:dict, k:int)->tuple:
    "(loss falls, Dice rises) of stage `k`: last epoch's training loss below the first's; best tuning Dice after the first epoch above the first's and above 0.1."
    lg = tr[k]['log']; loss, dice = lg['train_loss'], [d if d == d else -1. for d in lg['dice']]    # NaN (empty tuning masks) counts as lowest
    if len(loss) < 2: return None, None
    return loss[-1] < loss[0], max(dice[1:]) > max(dice[0], MIN_DICE)

# ---------------------------------------------------------------- part 6: inference

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

def _ms(s:float)->str: return '—' if s != s else f"{1000 * s:.0f} ms"

def _mem(g:float)->str: return '—' if g != g else f"{g:.2f} GiB ({g * 2**30 / 1e9:.2f} GB)"

def _ok(results, name)->dict: return results[name].data if results.get(name) and results[name].status == 'ok' else {}

def checks(results:dict, S:Sizes)->list:
    "The checks against the targets, from whatever the parts measured (a part that did not run leaves its checks unmeasured)."
    out, en = [], S.enforce
    nb = results.get('notebooks')
    out.append(Check("`cuda` notebook cells pass", nb.status if nb else 'not run', 'pass', None if nb is None or nb.status in ('skipped', 'not run')
                     else nb.status == 'ok', True))
    mc = _ok(results, 'memcap')
    for k in (1, 2):
        r = mc.get(k); capped = bool(r and r['capped'])
        out.append(Check(f"stage {k}: a training step fits the paper's 11 GB card (process capped at {CAP_GB} GB)",
                         ('fits' if r['fits'] else f"out of memory: {r['error']}") + (f", reserved {_mem(r['reserved_gib'])}" if capped else ' (no cap on the CPU)')
                         if r else '—', 'fits', r['fits'] if capped else None, en))
    st, tr = _ok(results, 'step'), _ok(results, 'train')
    for k in (1, 2):
        r = st.get(k)
        out.append(Check(f"stage {k}: the loader's share of the step", f"{100 * r['loader_share']:.0f} %" if r else '—',
                         f"< {100 * LOADER_TARGET:.0f} %", None if not r else r['loader_share'] < LOADER_TARGET, False))
    for k in (1, 2):
        e = paper_epoch(tr[k], tr['tune']) if k in tr and tr[k]['epoch_s'] else None
        out.append(Check(f"stage {k}: an epoch as the paper's (100 volumes, {PAPER_TUNE} tuning studies; checkpoint aside)",
                         f"{e['paper']:.1f} s" if e else '—', f"< {PAPER_EPOCH_S[k - 1]:.0f} s (the paper, RTX 2080 Ti)",
                         None if not e else e['paper'] < PAPER_EPOCH_S[k - 1], False))
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
        L += [f"Measured {meta['date']} on **{meta['card']}** ({meta['card_mem']}, CUDA {meta['cuda']}, torch {meta['torch']}); host: {meta['machine']}; "
              f"by `bench/gpu_check.sh` (`bench/gpu_check.py`, budget {meta['budget']:.0f} s, took {meta['took']:.0f} s).", '']
    if not meta.get('complete', True):
        L += [f"**Incomplete**: the run was still going when this was written ({meta['took']:.0f} s in); parts marked `running` or "
              "`not run` have no result.", '']
    L += ["All data are **synthetic** phantoms: speed and memory figures and a check that training learns, never accuracy "
          "figures of the paper. The encoder is **not pretrained** (`pretrained=False`): the GPU machine has no internet and no "
          "Kinetics-400 weights, where the paper starts from them.", '',
          '### Parts', '', '| part | result | seconds | note |', '|---|---|---|---|']
    for name in PARTS:
        p = results.get(name) or Part(name, 'not run')
        note = p.note
        if name == 'data' and p.status == 'ok':
            d = p.data
            note = (f"{S.cases} synthetic RICORD studies ({d['shape']} DICOM, {S.lesions[0]}-{S.lesions[1]} infiltrates each, phantoms drawn in "
                    f"{d['workers']} processes) written in {d['synth_s']:.0f} s, converted and cached at "
                    f"{' and '.join('x'.join(map(str, g)) for g in S.grids)} in {d['prepare_s']:.0f} s; {d['train']} training, {d['tune']} tuning")
        L.append(f"| {TITLES[name]} | {'**' + p.status + '**' if p.status in ('failed', 'running') else p.status} | {p.seconds:.0f} | {_cell(note)} |")
    # part 3
    step = results.get('step')
    L += ['', f"### Training step per stage{' (mixed precision)' if not test else ''}", '']
    if step and step.status == 'ok':
        L += [f"{'fp16 autocast + GradScaler, `cudnn.benchmark`' if not test else 'float32 on the CPU'}, median of {S.step_n} steps after {S.warmup} "
              f"warm-up steps with a fixed batch; the step with the covseg loader draws full batches from the {'part-2 cache' if ctx_cache(results) else 'small studies of its own'} "
              f"(batched augmentation on the device), median of {S.loader_n}.", '',
              '| stage | input | step | samples/s | achieved TFLOP/s (step FLOPs) | epoch of 100 volumes | peak GPU memory allocated / reserved | step with covseg loader | loader share of the step | epoch of 100 volumes with the loader |',
              '|---|---|---|---|---|---|---|---|---|---|']
        for k, r in step.data.items():
            L.append(f"| stage {k} | {r['bs']}x1x{'x'.join(map(str, r['grid']))} | {1000 * r['step_s']:.0f} ms | {r['samples_s']:.1f} | {r['tflops']:.1f} "
                     f"({r['flops'] / 1e12:.2f} T) | {r['epoch100_s']:.1f} s | {_mem(r['peak_gib'])} / {_mem(r.get('reserved_gib', float('nan')))} | "
                     f"{1000 * r['loader_step_s']:.0f} ms | {100 * r['loader_share']:.0f} % | {r['epoch100_loader_s']:.1f} s |")
    else: L.append(_not_ok(step))
    # part 4
    mc = results.get('memcap')
    L += ['', "### The paper's 11 GB card", '']
    if mc and mc.status == 'ok':
        L += [f"One training step per stage at the paper's batch and grid, mixed precision, with this process's GPU memory capped at {CAP_GB} GB "
              "(`torch.cuda.set_per_process_memory_fraction`; the rest of the RTX 2080 Ti's 11 GB is left for the CUDA context)"
              + (': on the CPU no cap applies, the same code runs.' if test else '.'), '',
              '| stage | input | fits | step | peak allocated | peak reserved |', '|---|---|---|---|---|---|']
        for k, r in mc.data.items():
            L.append(f"| stage {k} | {r['bs']}x1x{'x'.join(map(str, r['grid']))} | {'yes' if r['fits'] else 'no: ' + _cell(r['error'])} | "
                     f"{_ms(r['step_s'])} | {_mem(r['peak_gib'])} | {_mem(r['reserved_gib'])} |")
    else: L.append(_not_ok(mc))
    # part 5
    tr = results.get('train')
    L += ['', "### Paper profile, shortened", '']
    if tr and tr.status == 'ok':
        d = tr.data
        L += [f"`get_config('paper', pretrained=False, ...)` with {S.epochs[0]} frozen + {S.epochs[1]} stage-1 epochs and {S.epochs[2]} stage-2 epochs planned"
              f"; {d['train']} training volumes drawn {d['repeats']} times an epoch (the paper's epoch: about {EPOCH_VOLUMES} volumes)"
              f"{f', at most {S.max_batches} batch(es) per epoch' if S.max_batches else ''}, {d['tune']} tuning volumes; `covseg.train.train_stage` per stage (stage 2 from stage 1's "
              f"best weights), stopped early where the budget ends; the run folder on {'a RAM disk (/dev/shm)' if d['ramdisk'] else 'the disk'}. "
              f"*An epoch as the paper's* scales the median epoch's training batches to {EPOCH_VOLUMES} volumes and its tuning pass to the paper's "
              f"{PAPER_TUNE} studies, checkpoint writing aside.", '',
              '| stage | input | epochs run (planned) | training loss first → last | tuning Dice first → best (epoch) | epoch (median) | of which training / tuning / checkpoint | an epoch as the paper\'s | stage seconds | peak GPU memory allocated / reserved |',
              '|---|---|---|---|---|---|---|---|---|---|']
        for k in (1, 2):
            r = d[k]; lg = r['log']; dice = [x if x == x else float('nan') for x in lg['dice']]
            best = r['summary']['best_dice']; be = r['summary']['best_epoch']; e = paper_epoch(r, d['tune'])
            L.append(f"| stage {k} | {S.bs[k - 1]}x1x{'x'.join(map(str, S.grids[k - 1]))} | {len(lg['train_loss'])} ({d['planned'][k - 1]})"
                     f"{', stopped by the budget' if r['stopped'] else ''} | {lg['train_loss'][0]:.3f} → {lg['train_loss'][-1]:.3f} | "
                     f"{dice[0]:.3f} → {best:.3f} ({be}) | {e['epoch']:.1f} s | {e['train']:.1f} / {e['valid']:.1f} / {e['ckpt']:.1f} s | {e['paper']:.1f} s | "
                     f"{r['seconds']:.0f} s | {_mem(r['peak_gib'])} / {_mem(r['reserved_gib'])} |")
        if all(k in d and d[k]['epoch_s'] for k in (1, 2)):
            tot = sum(n * paper_epoch(d[k], d['tune'])['paper'] for k, n in zip((1, 2), PAPER_EPOCHS))
            L += ['', f"The paper's schedule ({PAPER_EPOCHS[0]} stage-1 and {PAPER_EPOCHS[1]} stage-2 epochs of {EPOCH_VOLUMES} volumes with a tuning pass over "
                  f"{PAPER_TUNE} studies, checkpoint writing aside) would take about {_hms(tot)} here; the paper: {PAPER_TOTAL} on an RTX 2080 Ti "
                  "(45 s and 2:30 min per epoch)."]
    else: L.append(_not_ok(tr))
    # part 6
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
        if c.ok is not None and not c.enforced: res += ' (not enforced: CPU test)' if test else ' (reported, not enforced)'
        L.append(f"| {c.what} | {_cell(c.measured)} | {c.target} | {res} |")
    L += ['', f"Exit status {meta['rc']}."]
    return L

def _atomic_write(path:Path, text:str):
    "Write `text` to `path` through a temporary file in the same folder: a kill leaves the old file or the new, never half."
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text); os.replace(tmp, path)

def write_section(lines:list, path)->Path:
    """Replace the GPU section of `path` (a BENCHMARKS.md) with `lines` (or add it at the end), leaving everything else as it is.
    Its own pattern, anchored at a line's start: `bench_data.replace_section` would also match the '### GPU' sub-sections of others."""
    path = Path(path)
    text = path.read_text() if path.exists() else '# Benchmarks\n'
    sec = '\n'.join([HEAD, ''] + list(lines)).rstrip('\n') + '\n'
    pat = re.compile(r'^' + re.escape(HEAD) + r'[ \t]*\n.*?(?=^## |\Z)', re.S | re.M)
    text = pat.sub(lambda m: sec + '\n', text, count=1) if pat.search(text) else text.rstrip('\n') + '\n\n' + sec
    _atomic_write(path, text.rstrip('\n') + '\n')
    return path

# ---------------------------------------------------------------- main

class Report:
    """The results so far and where they go: after every change the Markdown section into `out` and the JSON into
    `json_path`, each written atomically, so that a run killed at any moment leaves what finished."""
    def __init__(self, S:Sizes, out:Path, json_path:Path, meta:dict, budget:Budget):
        self.S, self.out, self.json, self.meta, self.budget = S, Path(out), Path(json_path), meta, budget
        self.results, self.lock = {}, threading.RLock()
    def set(self, p:Part)->Part:
        with self.lock: self.results[p.name] = p; self.save()
        return p
    def state(self, complete:bool=False)->tuple:
        res = {**{k: Part(k, 'not run', note='not reached') for k in PARTS if not complete}, **self.results}
        cks = checks(res, self.S)
        return res, cks, exit_code(res, cks)
    def save(self, complete:bool=False)->int:
        with self.lock:
            res, cks, rc = self.state(complete)
            meta = dict(self.meta, took=self.budget.used(), checks=cks, rc=rc, complete=complete)
            self.lines = render(res, self.S, meta)
            write_section(self.lines, self.out)
            self.json.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(self.json, json.dumps(dict(rc=rc, complete=complete, meta={k: v for k, v in meta.items() if k != 'checks'},
                                                     parts={k: asdict(p) for k, p in res.items()}, checks=[asdict(c) for c in cks]),
                                                indent=1, default=str))
            return rc

class Ctx:
    "What the parts share."
    def __init__(self, S, work, budget, parts, report):
        self.S, self.work, self.budget, self.parts, self.report = S, Path(work), budget, parts, report
        self.cache, self.data, self.run, self.children, self.deadline = None, {}, None, [], math.inf
    def reserve(self)->float:
        "Seconds to keep for the parts after training."
        return self.S.need['infer'] + 5 if 'infer' in self.parts else 5.

def watchdog(ctx:Ctx, at:float)->threading.Event:
    """A daemon thread that ends the whole run at monotonic time `at` unless the returned event is set first (a part stuck
    where the alarm cannot reach it, inside a long C call): the part running is written down as such, children stopped,
    exit status 1."""
    done = threading.Event()
    def run():
        if done.wait(max(at - time.monotonic(), 0)): return
        print(f"[gpu-check] watchdog: still running {GRACE:.0f} s past the budget; writing what there is and ending the run", flush=True)
        for p in ctx.children: stop_group(p, grace=2)
        try: ctx.report.save()
        finally: os._exit(1)
    threading.Thread(target=run, daemon=True).start()
    return done

def main(argv=None)->int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--budget', type=float, help='total seconds (default 450; 900 with --cpu-test)')
    ap.add_argument('--parts', default=','.join(PARTS), help=f"comma-separated subset of {','.join(PARTS)} (train needs data)")
    ap.add_argument('--cpu-test', action='store_true', help='the same code at tiny sizes on the CPU; writes to --out, not BENCHMARKS.md')
    ap.add_argument('--out', help='file whose GPU section to write (default: BENCHMARKS.md; with --cpu-test a file in the temp folder)')
    ap.add_argument('--json', help='where the JSON of the results goes (default: gpu_check.json beside --out; bench/out/ for BENCHMARKS.md)')
    ap.add_argument('--workdir', help='where data and runs go (default: a temporary folder, removed at the end)')
    ap.add_argument('--cases', type=int, help='synthetic RICORD studies for part 5 (default 12; 6 with --cpu-test)')
    ap.add_argument('--epochs', help='part 5: stage-1 frozen, stage-1 unfrozen, stage-2 epochs, e.g. 2,30,12 (the default)')
    ap.add_argument('--nbs', help='notebooks of part 1, comma-separated (default: by the number of GPUs; with --cpu-test: none, '
                                  'else these run on the CPU without `--flags cuda`)')
    ap.add_argument('--nbdev-test', help='the nbdev-test program (default: beside this Python, else on PATH)')
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
    if cuda and not a.cpu_test: torch.backends.cudnn.benchmark = True           # fixed shapes: let cuDNN pick its fastest kernels
    out = Path(a.out) if a.out else (Path(tempfile.gettempdir())/'covseg-gpu-check-cpu-test.md' if a.cpu_test else BENCHMARKS)
    js = Path(a.json) if a.json else (HERE/'out'/'gpu_check.json' if out.resolve() == BENCHMARKS.resolve() else out.with_name('gpu_check.json'))
    nbs = tuple(n.strip() for n in a.nbs.split(',') if n.strip()) if a.nbs else (None if a.cpu_test else notebooks_for(torch.cuda.device_count()))
    budget = Budget(a.budget if a.budget is not None else S.budget)
    work = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix='covseg-gpu-check-'))
    work.mkdir(parents=True, exist_ok=True)
    meta = dict(date=time.strftime('%Y-%m-%d'), machine=machine(), budget=budget.total, torch=torch.__version__, cuda=torch.version.cuda)
    if cuda and not a.cpu_test:
        meta.update(card=torch.cuda.get_device_name(0), card_mem=f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB",
                    gpus=torch.cuda.device_count())
    rep = Report(S, out, js, meta, budget)
    ctx = Ctx(S, work, budget, parts, rep)
    def stop(signum, frame): raise Stopped(signal.Signals(signum).name)
    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    dog = watchdog(ctx, time.monotonic() + budget.left() + GRACE)
    nb = None
    try:
        # 1. the notebooks, in the background while the data are made; starting them is capped like a part
        if 'notebooks' not in parts: rep.set(Part('notebooks', 'not run', note='not asked for (`--parts`)'))
        elif (why := notebooks_skip_note(cuda, a.cpu_test, nbs)) is not None: rep.set(Part('notebooks', 'skipped', note=why))
        elif (why := budget.skip_note(S.need['notebooks'])) is not None: rep.set(Part('notebooks', 'skipped', note=why, budget=True))
        else:
            try:
                with hard_cap(10): nb = start_notebooks(Path(js).with_name('nbdev-test.log'), nbs, cuda_flag=not a.cpu_test, exe=a.nbdev_test)
                ctx.children.append(nb)
                print(f"[gpu-check] notebooks: `{' '.join(nb.cmd)}` in the background", flush=True)
                rep.set(Part('notebooks', 'running', note=f"started on {', '.join(nbs)}; no result: the run ended while they ran"))
            except (Exception, PartTimeout) as e: rep.set(Part('notebooks', 'failed', note=f"could not start: {type(e).__name__}: {e}"))
        run_part('data', lambda c: make_data(c.work, c.S), ctx)
        if rep.results['data'].status == 'ok': ctx.data, ctx.cache = rep.results['data'].data, rep.results['data'].data['cache']
        if nb is not None:
            later = sum(S.need[k] for k in ('step', 'memcap', 'train', 'infer') if k in parts)
            rep.set(finish_notebooks(nb, min(nb.t0 + S.cap['notebooks'] - time.monotonic(), budget.left() - later))); nb = None
        run_part('step', part_step, ctx)
        run_part('memcap', part_memcap, ctx)
        if 'train' in parts and ctx.cache is None:
            d = rep.results['data']
            rep.set(Part('train', 'failed' if d.status == 'failed' else 'skipped', note=f"no data: the data part {d.status}", budget=d.budget))
        else: run_part('train', part_train, ctx)
        run_part('infer', part_infer, ctx)
    except Stopped as e: print(f"[gpu-check] stopped by {e}: writing what there is", flush=True)
    finally:
        dog.set()
        for s, h in old.items(): signal.signal(s, h)
        if nb is not None:                                                      # interrupted: stop them
            stop_group(nb); nb.logf.close()
            rep.results['notebooks'] = Part('notebooks', 'failed', time.monotonic() - nb.t0, 'stopped: the run was interrupted while they ran')
        for k in PARTS:
            if k not in rep.results: rep.results[k] = Part(k, 'failed', note='interrupted before it started')
        rc = rep.save(complete=True)
        print('\n'.join([HEAD, ''] + rep.lines))
        print(f"[gpu-check] written to {out} and {js}; exit status {rc}", flush=True)
        if ctx.run is not None and Path(ctx.run).parent != work:               # the run on the RAM disk
            if a.workdir: shutil.move(str(ctx.run), str(work/'run'))
            else: shutil.rmtree(ctx.run, ignore_errors=True)
        if not a.workdir: shutil.rmtree(work, ignore_errors=True)
    return rc

if __name__ == '__main__': sys.exit(main())
