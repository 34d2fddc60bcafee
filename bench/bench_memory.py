"""Benchmark of host memory (RAM) while training and while testing (CPU).

Peak resident memory of a process and all its children, sampled every 0.1 s with psutil (the sum of
the processes' RSS, so pages they share are counted once per process: an upper bound).

- `covseg train CACHE RUN --profile smoke` on a fresh synthetic cache (both stages, one process).
- With `--suite`: the notebook tests as `make test` runs them (the training notebooks one at a time,
  each in a fresh process) and as a plain `nbdev-test --n-workers 2` over all notebooks. This part
  takes about 10 minutes on 2 cores.

Writes its section into BENCHMARKS.md with the machine.

Run: `.venv/bin/python bench/bench_memory.py [--suite]` from the repository root."""
import sys, time, tempfile, shutil, subprocess, argparse
from pathlib import Path
import psutil
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import machine, replace_section

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

def peak_rss(cmd, cwd=ROOT, dt:float=0.1)->tuple:
    "Run `cmd`; return (exit code, seconds, peak summed RSS in GiB of it and its children)."
    t0, peak = time.time(), 0
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while p.poll() is None:
        try: procs = [psutil.Process(p.pid)] + psutil.Process(p.pid).children(recursive=True)
        except psutil.Error: procs = []
        tot = 0
        for q in procs:
            try: tot += q.memory_info().rss
            except psutil.Error: pass
        peak = max(peak, tot); time.sleep(dt)
    return p.returncode, time.time() - t0, peak / 2**30

def train_smoke(tmp:Path)->tuple:
    "Peak memory of `covseg train --profile smoke` (both stages) on five synthetic studies per dataset."
    covseg = str(BIN/'covseg')
    subprocess.run([covseg, 'synth', str(tmp/'data'), '--cases', '5', '--seed', '0'], check=True, capture_output=True)
    subprocess.run([covseg, 'prepare', str(tmp/'data'), str(tmp/'cache'), '--grids', '8x32x32,8x48x48'], check=True, capture_output=True)
    return peak_rss([covseg, 'train', str(tmp/'cache'), str(tmp/'run'), '--profile', 'smoke'])

def suite()->dict:
    "Peak memory of the notebook tests: as `make test` runs them, and as one plain `nbdev-test --n-workers 2`."
    make = peak_rss(['make', '--no-print-directory', 'test'])   # includes the docs and sync checks
    plain = peak_rss([str(BIN/'nbdev-test'), '--n-workers', '2'])
    return {'`make test` (training notebooks one at a time, then docs and sync checks)': make,
            'plain `nbdev-test --n-workers 2` over all notebooks': plain}

def main(with_suite:bool=False):
    tmp = Path(tempfile.mkdtemp(prefix='covseg-bench-mem-'))
    try: rows = {'`covseg train --profile smoke` (both stages, one process)': train_smoke(tmp)}
    finally: shutil.rmtree(tmp, ignore_errors=True)
    if with_suite: rows.update(suite())
    for k, (rc, s, gib) in rows.items(): print(f"{k}: exit {rc}, {s:.0f} s, peak {gib:.2f} GiB")
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on: {machine()}. Peak of the summed resident memory of the process "
             "and its children, sampled every 0.1 s (shared pages counted once per process, so an upper bound). Synthetic data.", '',
             '| what | exit code | wall time | peak RAM |', '|---|---|---|---|']
    lines += [f"| {k} | {rc} | {s:.0f} s | {gib:.2f} GiB |" for k, (rc, s, gib) in rows.items()]
    replace_section("## Host memory (`bench/bench_memory.py`)", lines)

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--suite', action='store_true', help='also measure the notebook tests (about 10 minutes)')
    main(ap.parse_args().suite)
