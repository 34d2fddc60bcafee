"""Benchmark of the model and a training step (issue: model and training).

On any machine: parameter count and FLOPs of one training step (forward + backward) at both paper
stage sizes, counted with torch.utils.flop_counter on the meta device (no computation), and the
measured CPU step time at the smoke and demo sizes. On a CUDA machine, in addition, per paper stage:
step time with mixed precision, samples/s, achieved TFLOP/s, the epoch time that follows for 100
training volumes, peak GPU memory, and how much the data loader (cache + batched GPU augmentation)
adds to the pure model step. Writes its sections into BENCHMARKS.md with the machine and card.

Run: `.venv/bin/python bench/bench_train.py` (one short command; a few minutes on a GPU)."""
import os, sys, time, re, json, tempfile, shutil, statistics, platform
from pathlib import Path
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import machine, replace_section as write_section
from covseg.model import R3DUNet, count_parameters
from covseg.train import DiceCELoss, get_config, PROFILES

STAGES = {'stage 1 (paper)': ((18, 112, 112), 6), 'stage 2 (paper)': ((20, 256, 256), 1)}

def step_flops(grid, bs)->float:
    "FLOPs of one forward + backward of the model and loss, counted on the meta device."
    m = R3DUNet(2).to('meta')
    x = torch.randn(bs, 1, *grid, device='meta'); y = torch.zeros(bs, *grid, dtype=torch.long, device='meta')
    with FlopCounterMode(display=False) as fc:
        DiceCELoss()(m(x), y).backward()
    return float(fc.get_total_flops())

def time_steps(grid, bs, device, n=5, amp=False):
    "Median seconds of one training step (forward, loss, backward, Adam step) with a fixed batch."
    torch.manual_seed(0)
    m = R3DUNet(2).to(device); opt = torch.optim.Adam(m.parameters(), 1e-4)
    x = torch.randn(bs, 1, *grid, device=device); y = (torch.rand(bs, *grid, device=device) > 0.9).long()
    scaler = torch.amp.GradScaler(enabled=amp)
    lf = DiceCELoss(); ts = []
    for i in range(n + 2):
        if device == 'cuda': torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device_type=device, dtype=torch.float16, enabled=amp):
            loss = lf(m(x), y)
        opt.zero_grad(); scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
        if device == 'cuda': torch.cuda.synchronize()
        if i >= 2: ts.append(time.perf_counter() - t0)
    return statistics.median(ts)

def loader_step(grid, bs, device, n=8):
    "Median seconds of a training step when batches come from the covseg loader (cache, batched augmentation on the device)."
    from covseg.synth import write_ricord, mark_synthetic
    from covseg.preprocess import prepare
    from covseg.loaders import make_dls
    tmp = Path(tempfile.mkdtemp())
    try:
        write_ricord(tmp/'data/ricord', n=max(8, bs * 3), seed=0); mark_synthetic(tmp/'data/ricord')
        prepare(tmp/'data', tmp/'cache', grids=[grid])
        dls = make_dls(tmp/'cache', grid, bs, device=device)
        torch.manual_seed(0)
        m = R3DUNet(2).to(device); opt = torch.optim.Adam(m.parameters(), 1e-4)
        scaler = torch.amp.GradScaler(enabled=device == 'cuda'); lf = DiceCELoss(); ts = []
        it = iter(dls.train); k = 0
        while k < n + 2:
            if device == 'cuda': torch.cuda.synchronize()
            t0 = time.perf_counter()                       # the batch's loading and augmentation count too
            try: xb, yb = next(it)
            except StopIteration: it = iter(dls.train); continue
            with torch.autocast(device_type=device, dtype=torch.float16, enabled=device == 'cuda'):
                loss = lf(m(xb), yb)
            opt.zero_grad(); scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
            if device == 'cuda': torch.cuda.synchronize()
            if k >= 2: ts.append(time.perf_counter() - t0)
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
    flops = {r[0]: r[2] for r in rows}
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
    if not torch.cuda.is_available(): return print('no CUDA GPU here: the GPU section of BENCHMARKS.md is left as it is')
    card = torch.cuda.get_device_name(0)
    gl = [f"Measured {time.strftime('%Y-%m-%d')} on **{card}** ({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB), "
          f"torch {torch.__version__}; mixed precision (fp16 autocast + GradScaler), median of 5 steps after 2 warm-up steps, synthetic data.", '',
          '| stage | batch | step | samples/s | achieved TFLOP/s | epoch of 100 volumes | peak GPU memory | step with covseg loader | loader adds |',
          '|---|---|---|---|---|---|---|---|---|']
    for name, (grid, bs) in STAGES.items():
        torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
        t = time_steps(grid, bs, 'cuda', n=5, amp=True)
        peak = torch.cuda.max_memory_allocated() / 2**30
        tl = loader_step(grid, bs, 'cuda')
        gl.append(f"| {name} | {bs} | {t * 1000:.0f} ms | {bs / t:.1f} | {flops[name] / t / 1e12:.1f} | {100 / bs * t:.0f} s | {peak:.2f} GiB | "
                  f"{tl * 1000:.0f} ms | {100 * (tl / t - 1):+.0f} % |")
    gl += ['', "Targets: stage 2 peak memory under 8 GB; the loader adds at most 20 % to the pure step. The paper's figures on an "
           "RTX 2080 Ti: 45 s per stage-1 epoch, 2:30 min per stage-2 epoch, 10 h 49 min in total."]
    write_section("## GPU", gl)
    print('\n'.join(gl))

if __name__ == '__main__': main()
