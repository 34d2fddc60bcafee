"""Benchmark of inference (issue: inference): seconds and peak memory to segment one 300x512x512 study with the
paper's R3DUNet at the paper's stage-2 grid 20x256x256, on the CPU, in covseg's two modes, and covseg's sliding
window side by side with MONAI's `sliding_window_inference` running the same network on the same resampled study
with the same patch size, overlap and Gaussian blending (their outputs are compared). Each CPU measurement runs in a
fresh subprocess, so that its peak resident memory (VmHWM, i.e. ru_maxrss without what an exec'd child inherits
from its parent's peak) is its own. With a CUDA GPU, a GPU table too
(seconds, `torch.cuda.max_memory_allocated`, card name), including a 600x512x512 study in sliding mode.

The network has random weights: these are speed and memory figures, never accuracy figures, and the study is a
synthetic phantom (`covseg.phantom`). Targets (CPU, 2 cores): paper mode <= 30 s and <= 3 GB.

Run: `.venv/bin/python bench/bench_infer.py` (a few minutes on 2 cores; writes the section 'Inference' of
BENCHMARKS.md). `--quick`: a small study and grid, a correctness check of every path in well under a minute, no
write. `--modes paper`: only some of the CPU measurements (and no write unless all ran)."""
import os, sys, time, json, argparse, subprocess, tempfile, shutil, resource, re
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import machine, replace_section, section_pattern, BENCHMARKS

HEAD = "## Inference (`bench/bench_infer.py`)"
FULL = dict(shape=(300, 512, 512), spacing=(1.0, 0.7, 0.7), grid=(20, 256, 256), slide_spacing=(10.0, 1.0, 1.0))
# quick: spacing chosen so that covseg's and MONAI's tilings coincide (two patches per axis), as in the full run
QUICK = dict(shape=(40, 80, 80), spacing=(7.5, 4.5, 4.5), grid=(8, 32, 32), slide_spacing=(25.0, 7.5, 7.5))
OVERLAP, BATCH = 0.5, 1
CPU_MODES = ('baseline', 'paper', 'sliding', 'monai')

def peak_rss_gib()->float:
    """Peak resident memory (GiB) of this process since it started (exec): VmHWM. (On Linux `ru_maxrss` of an exec'd child
    starts at the parent's own peak, inherited through vfork/exec, so it would count the parent's phantom generation.)"""
    try: return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')) / 2**20
    except (OSError, StopIteration): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

def _model(grid, spacing, device='cpu'):
    "The paper's R3DUNet with random weights (seeded) in a covseg Predictor."
    import torch
    from covseg.model import R3DUNet
    from covseg.infer import Predictor
    torch.manual_seed(0)
    return Predictor(R3DUNet(2), grid, spacing, device=device)

def child(mode:str, study:str, out:str, grid, slide_spacing)->dict:
    "One measurement in this (fresh) process; returns times (s) and peak RSS (GiB)."
    import torch
    import covseg.infer as ci
    from covseg.io import read_image, write_image
    from covseg.volume import model_input, grid_at_spacing, to_study_grid, AIR_LEVEL
    pr = _model(grid, slide_spacing)
    res = dict(mode=mode, threads=torch.get_num_threads())
    if mode == 'baseline': return dict(res, rss_gib=peak_rss_gib())
    t0 = time.perf_counter(); vol = read_image(study); res['read_s'] = time.perf_counter() - t0
    if mode in ('paper', 'sliding'):
        stitch = {}
        if mode == 'sliding':                       # time the stitching alone and keep its output for the comparison with MONAI
            orig = ci.sliding_window_proba
            def timed(*a, **k):
                t = time.perf_counter(); r = orig(*a, **k); stitch['s'] = time.perf_counter() - t
                np.save(Path(out)/'covseg_stitched.npy', r); return r
            ci.sliding_window_proba = timed
        t0 = time.perf_counter()
        mask = ci.predict(pr, vol, mode, overlap=OVERLAP, batch_size=BATCH)
        res['predict_s'] = time.perf_counter() - t0
        if stitch: res['stitch_s'] = stitch['s']
    else:                                           # MONAI: same resampled input, same network, same patch/overlap/Gaussian; then covseg's way back
        from monai.inferers import sliding_window_inference
        from monai.data.utils import dense_patch_slices
        from monai.inferers.utils import _get_scan_interval
        t0 = time.perf_counter()
        small = model_input(vol, grid_at_spacing(vol.geometry, slide_spacing))
        x = torch.from_numpy(small.array)[None, None]
        fg = lambda t: pr.model(t).float().softmax(1)[:, 1:]            # one channel out, as covseg keeps
        with torch.inference_mode():
            t1 = time.perf_counter()
            p = sliding_window_inference(x, pr.grid, BATCH, fg, overlap=OVERLAP, mode='gaussian', sigma_scale=0.125,
                                         padding_mode='constant', cval=AIR_LEVEL)[0, 0].numpy()
            res['stitch_s'] = time.perf_counter() - t1
        np.save(Path(out)/'monai_stitched.npy', p)
        p = to_study_grid(p, small.geometry, vol.geometry)
        mask = vol.with_array((p > 0.5).view(np.uint8))
        res['predict_s'] = time.perf_counter() - t0
        size = small.shape
        if all(s >= g for s, g in zip(size, pr.grid)):
            sl = dense_patch_slices(size, pr.grid, _get_scan_interval(size, pr.grid, 3, (OVERLAP,) * 3))
            mstarts = [sorted({s[d].start for s in sl}) for d in range(3)]
            res['same_tiling'] = mstarts == [ci.patch_starts(n, g, OVERLAP) for n, g in zip(size, pr.grid)]
        else: res['same_tiling'] = None
    t0 = time.perf_counter(); write_image(mask, Path(out)/f"{mode}_mask.nii.gz", like=vol); res['write_s'] = time.perf_counter() - t0
    res['total_s'] = res['read_s'] + res['predict_s'] + res['write_s']
    return dict(res, rss_gib=peak_rss_gib())

def run_child(mode, study, out, cfg)->dict:
    "Run `child` in a fresh Python process and return its result."
    cmd = [sys.executable, __file__, '--child', mode, '--study', str(study), '--out', str(out),
           '--grid', 'x'.join(map(str, cfg['grid'])), '--slide-spacing', ','.join(map(str, cfg['slide_spacing']))]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode: raise RuntimeError(f"{mode} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])

def make_study(tmp:Path, cfg)->Path:
    "A synthetic phantom study written as an int16 NIfTI file (what a user has)."
    from covseg.phantom import make_phantom
    from covseg.synth import _geometry
    from covseg.volume import Volume
    from covseg.io import write_image
    p = make_phantom(cfg['shape'], spacing=cfg['spacing'], seed=1)
    return write_image(Volume(np.round(p.image).astype(np.int16), _geometry(p)), tmp/'study.nii.gz')

def agreement(out:Path)->dict:
    "How closely covseg's and MONAI's stitched probabilities (on the resampled study) agree."
    a, b = np.load(out/'covseg_stitched.npy'), np.load(out/'monai_stitched.npy')
    ma, mb = a > .5, b > .5
    inter, tot = (ma & mb).sum(), ma.sum() + mb.sum()
    return dict(max_abs=float(np.abs(a - b).max()), mean_abs=float(np.abs(a - b).mean()),
                mask_dice=float(2 * inter / tot) if tot else float('nan'), voxels=int(a.size), shape=list(a.shape))

def gpu_rows(cfg, device='cuda', big=((600, 512, 512), (2.5, 0.7, 0.7)), tta:bool=True)->list:
    """(what, seconds, peak GPU memory GiB) per mode on `device`, with and (`tta`) without flip TTA; a large study (shape, sliding
    spacing) shows memory stays bounded. `bench/gpu_check.py` reuses it (both modes, no TTA, no large study)."""
    import torch
    from covseg.infer import predict, patch_starts
    from covseg.volume import grid_at_spacing, Volume
    from covseg.phantom import make_phantom
    from covseg.synth import _geometry
    pr = _model(cfg['grid'], cfg['slide_spacing'], device)
    cuda = torch.device(device).type == 'cuda'
    def one(vol, **kw):
        predict(pr, vol, **kw)                                   # warm-up (cuDNN autotuning, allocator)
        if cuda: torch.cuda.synchronize(); torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter(); predict(pr, vol, **kw)
        if cuda: torch.cuda.synchronize()
        return time.perf_counter() - t0, (torch.cuda.max_memory_allocated() / 2**30 if cuda else float('nan'))
    p = make_phantom(cfg['shape'], spacing=cfg['spacing'], seed=1)
    vol = Volume(np.round(p.image).astype(np.int16), _geometry(p)); del p
    sh = 'x'.join(map(str, cfg['shape']))
    rows = []
    for mode in ('paper', 'sliding'):
        rows.append((f"{mode} mode, {sh} study", *one(vol, mode=mode)))
        if tta: rows.append((f"{mode} mode + TTA (2 flips), {sh} study", *one(vol, mode=mode, tta=True)))
    if big is not None:
        shape, fine = big
        b = make_phantom(shape, spacing=tuple(f / n for f, n in zip((375., 358.4, 358.4), shape)), seed=2)   # 0.625 x 0.7 x 0.7 mm at 600x512x512
        bvol = Volume(np.round(b.image).astype(np.int16), _geometry(b)); del b
        n = int(np.prod([len(patch_starts(s, g, OVERLAP)) for s, g in zip(grid_at_spacing(bvol.geometry, fine), cfg['grid'])]))
        rows.append((f"sliding mode, {'x'.join(map(str, shape))} study at {'x'.join(map(str, fine))} mm ({n} patches, batch 4)",
                     *one(bvol, mode='sliding', spacing=fine, batch_size=4)))
    return rows

def _keep_gpu_part()->list:
    "The GPU sub-section already in BENCHMARKS.md (kept when this machine has no GPU)."
    if not BENCHMARKS.exists(): return []
    m = section_pattern(HEAD).search(BENCHMARKS.read_text())
    g = re.search(r'\n(### GPU.*)', m.group(0), re.S) if m else None
    return g.group(1).rstrip('\n').split('\n') if g and 'No GPU figure' not in g.group(1) else []

def fmt(r)->str:
    parts = [f"{r['total_s']:.1f} s (read {r['read_s']:.1f}, predict {r['predict_s']:.1f}, write {r['write_s']:.1f})"]
    return parts[0] + (f"; stitching alone {r['stitch_s']:.1f} s" if 'stitch_s' in r else '')

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--quick', action='store_true'); ap.add_argument('--no-write', action='store_true')
    ap.add_argument('--modes', default=','.join(CPU_MODES))
    ap.add_argument('--child'); ap.add_argument('--study'); ap.add_argument('--out'); ap.add_argument('--grid'); ap.add_argument('--slide-spacing')
    a = ap.parse_args()
    if a.child:
        grid = tuple(int(v) for v in a.grid.split('x')); sp = tuple(float(v) for v in a.slide_spacing.split(','))
        return print(json.dumps(child(a.child, a.study, a.out, grid, sp)))
    cfg, modes = (QUICK if a.quick else FULL), [m for m in a.modes.split(',') if m]
    tmp = Path(tempfile.mkdtemp(prefix='covseg-bench-infer-'))
    try:
        t0 = time.perf_counter(); study = make_study(tmp, cfg); t_ph = time.perf_counter() - t0
        res = {}
        for m in modes:
            res[m] = run_child(m, study, tmp, cfg)
            print(m, json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in res[m].items()}), flush=True)
        agr = agreement(tmp) if {'sliding', 'monai'} <= set(res) else None
        if agr: print('covseg vs MONAI stitched probabilities:', json.dumps(agr))
        if agr and res['monai']['same_tiling']:
            assert agr['max_abs'] < 1e-3 and agr['mask_dice'] > 0.999, agr      # same tiles, same weights: the same numbers
        import torch
        gpu = None
        if torch.cuda.is_available(): gpu = gpu_rows(cfg, 'cuda', ((24, 48, 48), (25., 7.5, 7.5)) if a.quick else ((600, 512, 512), (2.5, 0.7, 0.7)))
        elif a.quick: gpu = gpu_rows(cfg, 'cpu', ((24, 48, 48), (25., 7.5, 7.5)))   # the GPU code path, exercised on the CPU               # exercise the GPU code path on the CPU
        if gpu:
            for row in gpu: print('GPU', row)
        if a.quick or a.no_write or set(modes) != set(CPU_MODES):
            return print('(not written to BENCHMARKS.md)')
        write(cfg, res, agr, gpu, t_ph)
    finally: shutil.rmtree(tmp, ignore_errors=True)

def write(cfg, res, agr, gpu, t_ph):
    import torch
    sh, sp = 'x'.join(map(str, cfg['shape'])), 'x'.join(map(str, cfg['spacing']))
    g, ss = 'x'.join(map(str, cfg['grid'])), 'x'.join(map(str, cfg['slide_spacing']))
    p, s, mo, b = res['paper'], res['sliding'], res['monai'], res['baseline']
    ok = lambda r: '**met**' if r['total_s'] <= 30 and r['rss_gib'] <= 3 * 1e9 / 2**30 else '**missed**'
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on: {machine()}; torch threads {p['threads']}, CPU only, each row in a fresh "
             f"process (peak resident memory = its VmHWM: `ru_maxrss` of a child process on Linux starts at its parent's peak). One **synthetic** phantom study, {sh} voxels of {sp} mm, int16 "
             f"NIfTI. The paper's R3DUNet with **random weights** (timing only) at the paper's stage-2 grid {g}. Sliding mode at "
             f"{ss} mm (a model trained at a finer scale than the paper's grid gives this study, so that the window slides), "
             f"patches {g}, overlap {OVERLAP}, Gaussian weights (sigma = 1/8 patch), batch {BATCH}, no TTA. MONAI "
             f"`sliding_window_inference` gets the same resampled study, network, patch, overlap and `mode='gaussian'`; "
             f"resampling and the way back to the study's grid are covseg's in both.", '',
             '| what | seconds | peak memory | target |', '|---|---|---|---|',
             f"| Python + torch + covseg imported, R3DUNet built (the floor of every row) | — | {b['rss_gib']:.2f} GiB | — |",
             f"| paper mode: read + resize to {g} + one forward pass + back to {sh} + write | {fmt(p)} | {p['rss_gib']:.2f} GiB | ≤ 30 s, ≤ 3 GB: {ok(p)} |",
             f"| sliding mode, covseg | {fmt(s)} | {s['rss_gib']:.2f} GiB | — |",
             f"| sliding mode, MONAI `sliding_window_inference` | {fmt(mo)} | {mo['rss_gib']:.2f} GiB | — |", '',
             f"covseg and MONAI on the resampled study ({'x'.join(map(str, agr['shape']))} voxels; "
             f"{'the same' if mo['same_tiling'] else 'different'} patch positions): largest difference of the blended "
             f"probabilities {agr['max_abs']:.1e}, mean {agr['mean_abs']:.1e}; Dice of the two masks {agr['mask_dice']:.6f}.",
             f"(Phantom generation, not timed above: {t_ph:.0f} s.)"]
    lines += ['', '### GPU', '']
    if gpu:
        card = torch.cuda.get_device_name(0)
        lines += [f"Measured {time.strftime('%Y-%m-%d')} on **{card}** ({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB), "
                  "autocast (bf16 where supported, else fp16), after one warm-up run; `predict` only (no file I/O); the stitched "
                  "probabilities stay in CPU memory.", '', '| what | seconds | peak GPU memory (`max_memory_allocated`) |', '|---|---|---|']
        lines += [f"| {w} | {t:.2f} | {m:.2f} GiB |" for w, t, m in gpu]
    else:
        kept = _keep_gpu_part()
        lines = lines[:-3] + (['', *kept] if kept else ['', '### GPU', '', "No GPU figure yet: no CUDA GPU was at hand. "
                              "`.venv/bin/python bench/bench_infer.py` on a CUDA machine adds seconds and peak GPU memory per mode, "
                              "and for a 600x512x512 study in sliding mode, with the card's name."])
    replace_section(HEAD, lines)
    print(f"written to {BENCHMARKS}")

if __name__ == '__main__':
    main()
