"""Benchmark of the model and a training step (issue: model and training).

On any machine: parameter count and FLOPs of one training step (forward + backward) at both paper
stage sizes, counted with torch.utils.flop_counter on the meta device (no computation), and the
measured CPU step time at the smoke and demo sizes, into BENCHMARKS.md with the machine. The GPU figures of the same
step (`stage_step`, below: per paper stage, the step time with mixed precision, samples/s, achieved TFLOP/s, the epoch
time that follows for 100 training volumes, peak GPU memory, and how much the data loader adds to the pure model step)
are measured by `bench/gpu_check.py --parts step`, which imports this file and owns the GPU section; this file never
imports it (no import circle).

Run: `.venv/bin/python bench/bench_train.py` (one short command, a few minutes on 2 cores)."""
import os, sys, time, tempfile, shutil, statistics
from pathlib import Path
import torch
from torch.utils.flop_counter import FlopCounterMode
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import machine, replace_section as write_section
from covseg.model import R3DUNet, count_parameters
from covseg.train import DiceCELoss, PROFILES

STAGES = {'stage 1 (paper)': ((18, 112, 112), 6), 'stage 2 (paper)': ((20, 256, 256), 1)}

def step_flops(grid, bs)->float:
    "FLOPs of one forward + backward of the model and loss, counted on the meta device."
    m = R3DUNet(2).to('meta')
    x = torch.randn(bs, 1, *grid, device='meta'); y = torch.zeros(bs, *grid, dtype=torch.long, device='meta')
    with FlopCounterMode(display=False) as fc:
        DiceCELoss()(m(x), y).backward()
    return float(fc.get_total_flops())

def time_steps(grid, bs, device, n=5, amp=False, warmup=2):
    "Median seconds of one training step (forward, loss, backward, Adam step) with a fixed batch, after `warmup` steps."
    torch.manual_seed(0)
    m = R3DUNet(2).to(device); opt = torch.optim.Adam(m.parameters(), 1e-4)
    x = torch.randn(bs, 1, *grid, device=device); y = (torch.rand(bs, *grid, device=device) > 0.9).long()
    scaler = torch.amp.GradScaler(enabled=amp)
    lf = DiceCELoss(); ts = []
    for i in range(n + warmup):
        if device == 'cuda': torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device_type=device, dtype=torch.float16, enabled=amp):
            loss = lf(m(x), y)
        opt.zero_grad(); scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
        if device == 'cuda': torch.cuda.synchronize()
        if i >= warmup: ts.append(time.perf_counter() - t0)
    return statistics.median(ts)

def loader_step(grid, bs, device, n=8, cache=None, warmup=2):
    """Median seconds of a training step when batches come from the covseg loader (cache, batched augmentation on the device).
    `cache`: a prepared cache holding `grid` (else small synthetic RICORD studies are written and cached for it)."""
    from covseg.synth import write_ricord, mark_synthetic
    from covseg.preprocess import prepare
    from covseg.loaders import make_dls
    tmp = Path(tempfile.mkdtemp())
    try:
        if cache is None:
            write_ricord(tmp/'data/ricord', n=max(8, bs * 3), seed=0); mark_synthetic(tmp/'data/ricord')
            prepare(tmp/'data', tmp/'cache', grids=[grid])
        dls = make_dls(tmp/'cache' if cache is None else cache, grid, bs, device=device)
        torch.manual_seed(0)
        m = R3DUNet(2).to(device); opt = torch.optim.Adam(m.parameters(), 1e-4)
        scaler = torch.amp.GradScaler(enabled=device == 'cuda'); lf = DiceCELoss(); ts = []
        if len(dls.train.dataset) < bs: raise ValueError(f"{len(dls.train.dataset)} training volumes make no full batch of {bs}")
        it = iter(dls.train); k = 0
        while k < n + warmup:
            if device == 'cuda': torch.cuda.synchronize()
            t0 = time.perf_counter()                       # the batch's loading and augmentation count too
            try: xb, yb = next(it)
            except StopIteration: it = iter(dls.train); continue
            if len(yb) != bs: continue                     # the last, short batch of an epoch: full batches only
            with torch.autocast(device_type=device, dtype=torch.float16, enabled=device == 'cuda'):
                loss = lf(m(xb), yb)
            opt.zero_grad(); scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
            if device == 'cuda': torch.cuda.synchronize()
            if k >= warmup: ts.append(time.perf_counter() - t0)
            k += 1
        return statistics.median(ts)
    finally: shutil.rmtree(tmp, ignore_errors=True)

def main():
    torch.set_num_threads(os.cpu_count())
    pc = count_parameters(R3DUNet(2))
    rows = []
    for name, (grid, bs) in STAGES.items():
        fl = step_flops(grid, bs)
        rows.append((name, f"{bs}x1x{'x'.join(map(str, grid))}", fl))
    lines = [f"Counted {time.strftime('%Y-%m-%d')} with `torch.utils.flop_counter` on the meta device (machine independent). "
             f"Parameters: {pc['total'] / 1e6:.1f} M in all, {pc['encoder'] / 1e6:.1f} M encoder (r3d_18), {pc['decoder'] / 1e6:.1f} M decoder.", '',
             '| training step (forward + backward) | input | FLOPs |', '|---|---|---|'] + [f"| {a} | {b} | {c / 1e12:.2f} T |" for a, b, c in rows]
    write_section("## Model: parameters and FLOPs (`bench/bench_train.py`)", lines)
    print('\n'.join(lines))
    # CPU step times at the smoke and demo sizes
    cpu = []
    for prof in ('smoke', 'demo'):
        for k in (1, 2):
            st = PROFILES[prof][f'stage{k}']
            t = time_steps(st.grid, st.bs, 'cpu', n=3)
            cpu.append((f"{prof} stage {k}", f"{st.bs}x1x{'x'.join(map(str, st.grid))}", t))
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on: {machine()}. One step = forward, loss, backward, Adam step with a fixed batch "
             "(median of 3 after 2 warm-up steps), float32.", '',
             '| profile / stage | batch | seconds per step |', '|---|---|---|'] + [f"| {a} | {b} | {c:.2f} s |" for a, b, c in cpu]
    write_section("## Training step on the CPU (`bench/bench_train.py`)", lines)
    print('\n'.join(lines))
    # The GPU section is `bench/gpu_check.py`'s, which imports this file (never the other way round: no import circle).
    print('the GPU figures of a training step: `python bench/gpu_check.py --parts step` (it reuses `stage_step` below)')

def stage_step(grid, bs, device, n=5, loader_n=8, cache=None, warmup=2)->dict:
    """One stage's training step on `device` (mixed precision on CUDA): median step time, samples/s, achieved TFLOP/s, the
    epoch of 100 volumes that follows, peak `torch.cuda.max_memory_allocated` (GiB; NaN on the CPU), and the step with
    batches from the covseg loader (`loader_step`, on `cache` if given) with the loader's share of it."""
    cuda = torch.device(device).type == 'cuda'
    fl = step_flops(grid, bs)
    if cuda: torch.cuda.synchronize(); torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    t = time_steps(grid, bs, device, n=n, amp=cuda, warmup=warmup)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float('nan')
    reserved = torch.cuda.max_memory_reserved() / 2**30 if cuda else float('nan')
    tl = loader_step(grid, bs, device, n=loader_n, cache=cache, warmup=warmup)
    if cuda: torch.cuda.empty_cache()
    return dict(grid=tuple(grid), bs=bs, flops=fl, step_s=t, samples_s=bs / t, tflops=fl / t / 1e12, epoch100_s=100 / bs * t,
                peak_gib=peak, reserved_gib=reserved, loader_step_s=tl, loader_adds=tl / t - 1, loader_share=max(tl - t, 0.) / tl, epoch100_loader_s=100 / bs * tl)

if __name__ == '__main__': main()
