"""The wheel kit that `bench/gpu_check.sh` installs on a lent GPU machine, and its rehearsal on this machine.

A session may be lent, without warning, one GPU machine for about 15 minutes: no network, its own Python 3.12 with PyTorch
and much else (`IMAGE` below), and our working tree copied over (at most 64 MiB with what we carry; we keep 60 MB). What
`bench/gpu_check.py` needs beyond that image travels as wheels in `.whl/`; covseg itself travels as source (the tree's
root goes on PYTHONPATH: nothing in covseg reads its installed distribution's metadata).

- `needs()` finds the distributions the check needs, empirically: a fresh `.venv/bin/python` imports what
  `bench/gpu_check.py` and its bench helpers import, every module the notebooks it tests with `--flags cuda` import
  (their code cells, the strings they launch included), nbdev's test runner, and runs a small notebook through
  `nbdev.test.test_nb` (IPython's shell, matplotlib's inline backend, `show_doc`, a failing cell's traceback);
  `sys.modules` is then mapped to distributions (`importlib.metadata.packages_distributions()`), less IMAGE, covseg and
  the standard library, and kept where covseg's declared requirements reach them (what a module imports only because it
  happens to be installed, like pydicom's pixel-data plugins, stays out); plus any named in `BY_HAND`. The versions are
  .venv's: the ones covseg is tested with.
- `build(target)` downloads one wheel per distribution for CPython `target` ('cp312': the device; 'cp311': this
  machine's Python, for the rehearsal) into the cache `.whl-cache/` (kept between runs; pure wheels serve both targets;
  a distribution published only as an sdist is built here into a pure wheel), and makes the kit folder (`.whl/`,
  `.whl-rehearsal/`) from it: the wheels themselves, or, when kit plus tree would pass `LIMIT`, one `kit.tar.xz` (each
  wheel re-zipped with its members stored, then the lot xz -9 (-1 for the rehearsal's, which does not travel): the
  RECORD hashes are per member, so each wheel stays valid). `kit.json` beside it lists what is in it. Fails when the kit plus the tree that travels is over `LIMIT`.
- `rehearse()` builds the cp311 kit and runs `bash bench/gpu_check.sh --cpu-test [ARGS]` as the device would, in a
  copy of the tree that travels, with a fresh venv of this machine's Python (no site packages, no pip of its own) that
  sees, besides the kit, only .venv's distributions named in IMAGE (symbolic links on PYTHONPATH; checked); it passes
  when the script exits 0 and every part of `gpu_check.json`, where written, is ok or skipped with a note.

Only the standard library is imported at import time (`bench/gpu_check.sh` runs `check-site` on the device: are the
image's versions what the kit's distributions declare?).

Run: `make gpu-kit` (= `.venv/bin/python bench/gpu_kit.py build`), `python3 bench/gpu_kit.py build --rehearsal`,
`python3 bench/gpu_kit.py size`, `python3 bench/gpu_kit.py needs`, `make gpu-rehearsal` (= `python3 bench/gpu_kit.py
rehearse [-- ARGS for gpu_check.py]`). On the lent machine: `bash bench/gpu_check.sh` with `.whl` carried."""
import argparse, ast, io, json, lzma, os, re, shutil, subprocess, sys, tarfile, tempfile, time, zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV = ROOT/'.venv'
CACHE = ROOT/'.whl-cache'                     # every wheel downloaded or built, both targets (not carried)
KITS = {'cp312': ROOT/'.whl', 'cp311': ROOT/'.whl-rehearsal'}
PACKED, MANIFEST = 'kit.tar.xz', 'kit.json'
PRESETS = {'cp312': 9, 'cp311': 1}            # xz presets: the kit that travels is made small (2-3 min), the rehearsal's fast
LIMIT = 60e6                                  # bytes: kit + travelling tree (the device takes 64 MiB = 67.1e6 in all)
SELF = {'covseg'}                             # travels as source, on PYTHONPATH
PLATFORMS = ['manylinux_2_28_x86_64', 'manylinux_2_27_x86_64', 'manylinux_2_17_x86_64', 'manylinux2014_x86_64', 'manylinux1_x86_64']
MORE_PLATFORMS = [f'manylinux_2_{n}_x86_64' for n in range(39, 4, -1) if n not in (28, 27, 17)]   # tried when the above find nothing

def norm(name:str)->str:
    "A distribution's normalised name (PEP 503)."
    return re.sub(r'[-_.]+', '-', name).lower()

# The device image's Python distributions: /work/.library/device/KINDS.md, "Python packages already there" ("their
# image, 'cuda', holds these, as last read on a machine running it on 2026-11-17"). Its python3 is 3.12.3 at
# /opt/torch/.venv/bin/python3; versions are not listed there (seen: torch 2.11.0, numpy 2.5.2, accelerate 1.15.0).
IMAGE = frozenset(norm(n) for n in """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft
pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())

# Distributions the probe cannot see being imported, each with why it is needed. Empty: the probe (which runs a notebook
# through nbdev's runner) saw every import the rehearsal needed; `needs` prints what the kit's distributions declare but
# nobody imported, to review here.
BY_HAND = {}

def log(*a): print('[gpu-kit]', *a, flush=True)

def _since(t0:float)->str: return f"{time.monotonic() - t0:.1f} s"

# ---------------------------------------------------------------- what the check imports

def _py_imports(path:Path)->set:
    "Absolute modules imported anywhere in a Python file (in functions too); by its import lines where this Python cannot parse it."
    out, src = set(), path.read_text()
    try: tree = ast.parse(src, str(path))
    except SyntaxError as e:
        log(f"{path.relative_to(ROOT)} does not parse on Python {sys.version.split()[0]} ({e.msg}, line {e.lineno}): reading its import lines")
        return _text_imports(src)
    for n in ast.walk(tree):
        if isinstance(n, ast.Import): out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module and not n.level: out.add(n.module)
    return out

_IMPORT = re.compile(r'^\s*(?:from\s+([A-Za-z_][\w.]*)\s+import\b|import\s+([A-Za-z_][\w.]*(?:\s+as\s+\w+)?(?:\s*,\s*[A-Za-z_][\w.]*(?:\s+as\s+\w+)?)*))', re.M)

def _text_imports(src:str)->set:
    "Modules named by import lines in `src`, also inside strings (a notebook's launched scripts)."
    out = set()
    for m in _IMPORT.finditer(src):
        if m.group(1): out.add(m.group(1))
        else: out |= {p.split()[0] for p in m.group(2).split(',')}
    return out

def cuda_notebooks()->list:
    """The notebooks `bench/gpu_check.py` may run through nbdev-test: each string constant in it that names one
    (`12_loaders`, ...; read without importing it, whatever its layout of the day)."""
    names = set(re.findall(r"""['"](\d\d_\w+)['"]""", (HERE/'gpu_check.py').read_text()))
    nbs = sorted(ROOT/'nbs'/f'{n}.ipynb' for n in names if (ROOT/'nbs'/f'{n}.ipynb').exists())
    if not nbs: raise RuntimeError('bench/gpu_check.py names no notebook of nbs/')
    return nbs

def modules_to_probe()->dict:
    "{module: where it is imported}: gpu_check.py and the bench helpers it reaches, the cuda notebooks' code cells, nbdev's runner."
    out, todo, seen = {}, [HERE/'gpu_check.py'], set()
    while todo:
        f = todo.pop()
        if f in seen: continue
        seen.add(f)
        for m in _py_imports(f):
            if (HERE/f"{m.split('.')[0]}.py").exists(): todo.append(HERE/f"{m.split('.')[0]}.py")
            else: out.setdefault(m, f.relative_to(ROOT).as_posix())
    for nb in cuda_notebooks():
        for c in json.loads(nb.read_text())['cells']:
            if c['cell_type'] == 'code':
                for m in _text_imports(''.join(c['source'])): out.setdefault(m, nb.relative_to(ROOT).as_posix())
    for m in ('nbdev.test', 'execnb.shell', 'IPython', 'nbdev.showdoc', 'fastcore.test'): out.setdefault(m, "nbdev-test")
    return out

# Runs in .venv's python (-I: no user site, no PYTHON* variables): imports the modules, runs a notebook through
# nbdev's test runner, then maps sys.modules to distributions and writes them (with versions) as JSON.
PROBE = r'''
import sys, os, re, json, importlib, importlib.metadata as md, sysconfig, tempfile, shutil, traceback
root, out, mods, by_hand, image = sys.argv[1], sys.argv[2], *map(json.loads, sys.argv[3:6])
sys.path[:0] = [os.path.join(root, 'bench'), root]
os.chdir(root)
os.environ.setdefault('MPLBACKEND', 'Agg')
failed = {}
for m in sorted(mods):
    try: importlib.import_module(m)
    except Exception as e: failed[m] = f"{type(e).__name__}: {e}"
# nbdev-test's own path: test_nb -> CaptureShell (IPython, matplotlib's inline backend), a figure, show_doc,
# fastcore.test; and a notebook that fails (the traceback nbdev-test prints)
tmp = tempfile.mkdtemp(prefix='covseg-probe-')
try:
    shutil.copy(os.path.join(root, 'pyproject.toml'), tmp)
    good = ["import matplotlib.pyplot as plt\nfig, ax = plt.subplots(); ax.plot([0, 1]); plt.show()",
            "from nbdev.showdoc import *\nfrom fastcore.test import *\ndef f(x:int=1)->int:\n    'Doc.'\n    return x\nshow_doc(f)",
            "test_eq(f(2), 2)", "import pandas as pd\npd.DataFrame(dict(a=[1]))"]
    bad = ["def g(): raise ValueError('probe')", "g()"]
    from nbdev.test import test_nb
    for name, cells, want in (('good', good, True), ('bad', bad, False)):
        nb = dict(cells=[dict(cell_type='code', source=s, metadata={}, outputs=[], execution_count=None, id=f'c{i}') for i, s in enumerate(cells)],
                  metadata={}, nbformat=4, nbformat_minor=5)
        p = os.path.join(tmp, f'{name}.ipynb'); json.dump(nb, open(p, 'w'))
        ok, _ = test_nb(p, skip_flags=['notest'], showerr=not want)
        if ok != want: failed[f'<nbdev test_nb of a probe notebook that should {"pass" if want else "fail"}>'] = 'it did not'
except Exception: failed['<nbdev test_nb of the probe notebooks>'] = traceback.format_exc()
finally: shutil.rmtree(tmp, ignore_errors=True)
loaded = dict(sys.modules)
norm = lambda n: re.sub(r'[-_.]+', '-', n).lower()
base = dict(base=sys.base_prefix, platbase=sys.base_prefix, installed_base=sys.base_prefix, installed_platbase=sys.base_prefix)
std = {os.path.realpath(sysconfig.get_paths(vars=base)[k]) for k in ('stdlib', 'platstdlib')}
pkg = md.packages_distributions()
files = {}                     # file -> distribution: for names that several distributions share, or none declares
def owner(top, f):
    ds = set(pkg.get(top) or [])
    if len(ds) == 1: return ds.pop()
    if not f: return None
    if not files:
        for d in md.distributions():
            for r in d.files or []: files[os.path.realpath(d.locate_file(r))] = d.metadata['Name']
    return files.get(os.path.realpath(f))
imported, unowned = {}, []
for name, m in loaded.items():
    top, f = name.split('.')[0], getattr(m, '__file__', None)
    if top in sys.stdlib_module_names or top in sys.builtin_module_names: continue
    rf = os.path.realpath(f) if f else ''
    in_site = os.sep + 'site-packages' + os.sep in rf
    if rf and not in_site and any(rf.startswith(s + os.sep) for s in std): continue
    if rf.startswith(os.path.realpath(root) + os.sep) and not in_site and top != 'covseg': continue   # bench helpers
    d = owner(top, f)
    if d is None:
        if f: unowned.append(name)
        continue
    imported.setdefault(d, set()).add(top)
# what covseg declares, and what those of it that the check imports declare in turn, down to the image's distributions
# (which bring their own)
imp_norm = {norm(d) for d in imported}
from packaging.requirements import Requirement
def reqs(d, extras=()):
    for r in md.requires(d) or []:
        q = Requirement(r)
        if q.marker is None or any(q.marker.evaluate({'extra': e}) for e in ('', *extras)): yield q
declared, todo = {}, [(q, 'covseg') for q in reqs('covseg')]
while todo:
    q, by = todo.pop()
    k = norm(q.name)
    if k in declared or k in image: continue
    try: v = md.version(q.name)
    except md.PackageNotFoundError: declared[k] = dict(name=q.name, version=None, by=by); continue
    declared[k] = dict(name=md.metadata(q.name)['Name'], version=v, by=by)
    if k in imp_norm: todo += [(r, declared[k]['name']) for r in reqs(q.name, q.extras)]   # only through what the check imports
dists = {d: dict(version=md.version(d), modules=sorted(t)[:5]) for d, t in imported.items()}
for d in by_hand: dists.setdefault(d, dict(version=md.version(d), modules=[]))
json.dump(dict(python=sys.version.split()[0], imported=dists, declared=declared, failed=failed, unowned=sorted(unowned)), open(out, 'w'), indent=1)
'''

def venv_python()->Path:
    py = VENV/'bin'/'python'
    if not py.exists(): sys.exit(f"{py} is missing: `make install` first (the kit's versions are .venv's)")
    return py

def needs(verbose:bool=True)->dict:
    """{normalised name: (name, version)} of the distributions the GPU check needs beyond the image: the one rule.
    A distribution is in when a fresh .venv python imports a module of it for the check (`PROBE`) AND covseg's declared
    requirements reach it (through distributions not in IMAGE, which the image brings with their own); or when
    `BY_HAND` names it. Not IMAGE, not covseg, not the standard library. The versions are .venv's.
    Imported but declared by nobody on the way: an optional import that a module makes because the distribution is
    there (pydicom's pixel-data plugins, requests' SOCKS support, ...): left out, and said so. The rehearsal runs the
    check without them."""
    mods = modules_to_probe()
    with tempfile.TemporaryDirectory(prefix='covseg-needs-') as tmp:
        res = Path(tmp)/'probe.json'
        env = {k: v for k, v in os.environ.items() if not k.startswith('PYTHON')}
        p = subprocess.run([str(venv_python()), '-I', '-c', PROBE, str(ROOT), str(res), json.dumps(sorted(mods)),
                            json.dumps(sorted(BY_HAND)), json.dumps(sorted(IMAGE))], cwd=ROOT, env=env, capture_output=True, text=True)
        if p.returncode or not res.exists(): sys.exit(f"the probe failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
        r = json.loads(res.read_text())
    imp, dec = {norm(d): (d, v['version']) for d, v in r['imported'].items()}, r['declared']
    hand = {norm(n) for n in BY_HAND}
    out = {k: nv for k, nv in imp.items() if k not in IMAGE | SELF and (k in dec or k in hand)}
    if verbose:
        for m, e in sorted(r['failed'].items()):
            log(f"not importable in .venv (imported by {mods.get(m, '?')}): {m}: {e.strip().splitlines()[-1] if e else e}")
        if r['unowned']: log(f"modules of no distribution: {', '.join(r['unowned'][:20])}")
        opt = sorted(f"{n} {v}" for k, (n, v) in imp.items() if k not in IMAGE | SELF and k not in out)
        if opt: log(f"imported because installed, declared by none on the way (optional; left out): {', '.join(opt)}")
        lazy = sorted(f"{d['name']} (declared by {d['by']})" for k, d in dec.items() if k not in imp and k not in out)
        if lazy: log(f"declared but not imported by the check (left out; BY_HAND if needed): {', '.join(lazy)}")
        log(f"in the kit ({len(out)}), each declared by: " + ', '.join(f"{n} ({dec[k]['by'] if k in dec else 'BY_HAND'})" for k, (n, v) in sorted(out.items())))
        img = sorted(f"{n} {v}" for k, (n, v) in imp.items() if k in IMAGE)
        log(f"imported from the image ({len(img)}; .venv's versions, the device has its own): {', '.join(img)}")
    return dict(sorted(out.items()))

# ---------------------------------------------------------------- wheels

def wheel_info(fn:str):
    "(normalised name, version, python tags, abi tags, platform tags) of a wheel's file name."
    parts = fn[:-4].split('-')
    if not fn.endswith('.whl') or len(parts) not in (5, 6): return None
    return norm(parts[0]), parts[1], parts[-3].split('.'), parts[-2].split('.'), parts[-1].split('.')

def compatible(fn:str, target:str)->bool:
    "Does wheel `fn` install on CPython `target` ('cp312') on x86-64 Linux?"
    i = wheel_info(fn)
    if i is None: return False
    _, _, py, abi, plat = i
    minor = int(target[3:])
    def py_ok(t):
        if t in ('py3', f'py3{minor}', target): return True
        return 'abi3' in abi and t.startswith('cp3') and t[3:].isdigit() and int(t[3:]) <= minor
    return (any(py_ok(t) for t in py) and any(a in ('none', 'abi3', target) for a in abi)
            and any(p == 'any' or (p.endswith('_x86_64') and p.startswith(('manylinux', 'linux'))) for p in plat))

def _same_version(a:str, b:str)->bool:
    "Versions as a wheel's name and the metadata spell them (the file name may normalise: 1.0.0-1 -> 1.0.0.post1)."
    return a == b or a.replace('-', '_') == b.replace('-', '_') or re.sub(r'[-_.]?(post|dev)', r'.\1', a) == re.sub(r'[-_.]?(post|dev)', r'.\1', b)

def _cached(key:str, version:str, target:str)->Path|None:
    for f in sorted(CACHE.glob('*.whl')):
        i = wheel_info(f.name)
        if i and i[0] == key and _same_version(i[1], version) and compatible(f.name, target): return f
    return None

def _pip(*args, cwd=None):
    return subprocess.run([sys.executable, '-m', 'pip', *args, '--disable-pip-version-check'], cwd=cwd, capture_output=True, text=True)

def fetch(key:str, name:str, version:str, target:str)->Path:
    "The wheel of `name==version` for `target`, from the cache or downloaded (or built from the sdist: pure wheels only) into it."
    if (f := _cached(key, version, target)): return f
    CACHE.mkdir(exist_ok=True)
    pyver = f"3.{target[3:]}"
    with tempfile.TemporaryDirectory(prefix='covseg-wheel-') as tmp:
        base = ['download', '--no-deps', '--only-binary=:all:', '--python-version', pyver, '--implementation', 'cp', '-d', tmp, f'{name}=={version}']
        p = _pip(*base, *[a for pl in PLATFORMS for a in ('--platform', pl)])
        if p.returncode:
            log(f"{name}=={version}: no wheel for the usual platforms; trying manylinux_2_5 .. 2_39")
            p = _pip(*base, *[a for pl in PLATFORMS + MORE_PLATFORMS for a in ('--platform', pl)])
        if p.returncode:
            log(f"{name}=={version}: no wheel on the index for cp{target[2:]}; building one from its sdist")
            p = _pip('wheel', '--no-deps', '--no-binary', name, '-w', tmp, f'{name}=={version}')
            if p.returncode: sys.exit(f"{name}=={version}: neither a wheel nor an sdist that builds:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
        got = [f for f in Path(tmp).glob('*.whl')]
        if len(got) != 1 or not compatible(got[0].name, target):
            sys.exit(f"{name}=={version}: expected one wheel for {target}, got {[f.name for f in got]} (a built wheel must be pure: py3-none-any)")
        dest = CACHE/got[0].name
        shutil.move(str(got[0]), dest)
    return dest

def tree_files()->list:
    "The working tree that travels: `git ls-files -co --exclude-standard` (tracked and untracked-not-ignored files)."
    p = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=ROOT, capture_output=True, check=True)
    return [f for f in p.stdout.decode().split('\0') if f and os.path.lexists(ROOT/f)]

def tree_size()->int: return sum((ROOT/f).lstat().st_size for f in tree_files())

def folder_size(d:Path)->int: return sum(f.stat().st_size for f in d.iterdir() if f.is_file()) if d.exists() else 0

def _mb(n): return f"{n / 1e6:.1f} MB"

def stored(whl:Path)->bytes:
    "The wheel re-zipped with every member stored (same names, order, dates and modes): xz then sees the content itself."
    buf = io.BytesIO()
    with zipfile.ZipFile(whl) as zin, zipfile.ZipFile(buf, 'w', zipfile.ZIP_STORED) as zout:
        for i in zin.infolist():
            o = zipfile.ZipInfo(i.filename, i.date_time)
            o.external_attr, o.create_system, o.compress_type = i.external_attr, i.create_system, zipfile.ZIP_STORED
            zout.writestr(o, zin.read(i))
    return buf.getvalue()

def pack(wheels:list, dest:Path, preset:int=9):
    "One tar.xz (xz -9 by default) of the wheels, each re-zipped stored."
    tmp = dest.with_name(dest.name + '.part')
    with lzma.open(tmp, 'wb', preset=preset) as xz, tarfile.open(fileobj=xz, mode='w', format=tarfile.PAX_FORMAT) as tar:
        for w in sorted(wheels, key=lambda w: w.name):
            data = stored(w)
            ti = tarfile.TarInfo(w.name); ti.size, ti.mode, ti.mtime = len(data), 0o644, int(w.stat().st_mtime)
            tar.addfile(ti, io.BytesIO(data))
    os.replace(tmp, dest)

def _link(src:Path, dest:Path):
    try: os.link(src, dest)
    except OSError: shutil.copy2(src, dest)

def build(target:str='cp312', pack_kit:bool|None=None)->dict:
    """Make the kit for `target` ('cp312': `.whl/`, for the device; 'cp311': `.whl-rehearsal/`): one wheel per distribution
    of `needs()`, at .venv's version; packed into kit.tar.xz when kit plus tree would pass LIMIT (or `pack_kit`). Fails
    when even then the kit that travels (cp312) is over LIMIT. Returns the manifest (also written to the kit's kit.json)."""
    t0 = time.monotonic()
    kit = KITS[target]
    need = needs()
    log(f"{len(need)} distributions beyond the image ({_since(t0)})")
    wheels = {}
    for key, (name, version) in need.items():
        wheels[key] = fetch(key, name, version, target)
    # exactly one wheel per distribution; the cache keeps the wheels of the listed versions only (both targets)
    assert len({wheel_info(w.name)[0] for w in wheels.values()}) == len(wheels) == len(need)
    for f in CACHE.glob('*.whl'):
        i = wheel_info(f.name)
        if not i or i[0] not in need or not _same_version(i[1], need[i[0]][1]): log(f"removed from the cache: {f.name}"); f.unlink()
    tree, plain = tree_size(), sum(w.stat().st_size for w in wheels.values())
    packed = pack_kit if pack_kit is not None else plain + tree > LIMIT
    entries = [dict(name=need[k][0], version=need[k][1], wheel=w.name, bytes=w.stat().st_size) for k, w in wheels.items()]
    preset = PRESETS[target]
    man = dict(target=target, packed=packed, xz_preset=preset if packed else None, wheels=entries, wheel_bytes=plain)
    old = json.loads((kit/MANIFEST).read_text()) if (kit/MANIFEST).exists() else None
    kit.mkdir(exist_ok=True)
    if packed:
        same = old and old.get('packed') and old.get('xz_preset') == preset and old.get('wheels') == entries and (kit/PACKED).exists()
        if not same:
            t1 = time.monotonic(); log(f"packing {len(wheels)} wheels ({_mb(plain)}) into {kit.name}/{PACKED} (stored, xz -{preset}) ...")
            pack(list(wheels.values()), kit/PACKED, preset); log(f"packed in {_since(t1)}")
        keep = {PACKED, MANIFEST}
    else:
        for w in wheels.values():
            if not (kit/w.name).exists() or (kit/w.name).stat().st_size != w.stat().st_size: (kit/w.name).unlink(missing_ok=True); _link(w, kit/w.name)
        keep = {w.name for w in wheels.values()} | {MANIFEST}
    for f in kit.iterdir():
        if f.name not in keep: log(f"removed from {kit.name}/: {f.name}"); shutil.rmtree(f) if f.is_dir() else f.unlink()
    (kit/MANIFEST).write_text(json.dumps(man, indent=1) + '\n')
    man['kit_bytes'], man['tree_bytes'] = folder_size(kit), tree
    report(man, kit)
    log(f"built in {_since(t0)}")
    if man['kit_bytes'] + tree > LIMIT:
        if target == 'cp312': sys.exit(over_limit(man))
        log(f"(over the limit, but this kit does not travel) {over_limit(man)}")
    return man

def report(man:dict, kit:Path):
    w = max(len(f"{e['name']} {e['version']}") for e in man['wheels'])
    for e in sorted(man['wheels'], key=lambda e: e['name'].lower()):
        log(f"  {(e['name'] + ' ' + e['version']).ljust(w)}  {e['bytes'] / 1e6:7.2f} MB  {e['wheel']}")
    log(f"{len(man['wheels'])} wheels, {_mb(man['wheel_bytes'])} as wheels; the kit {kit.name}/ "
        f"({'packed: ' + PACKED if man['packed'] else 'the wheels themselves'}): {_mb(man['kit_bytes'])}; the tree that travels: "
        f"{_mb(man['tree_bytes'])}; together {_mb(man['kit_bytes'] + man['tree_bytes'])} of at most {_mb(LIMIT)}")

def over_limit(man:dict)->str:
    big = sorted(man['wheels'], key=lambda e: -e['bytes'])[:8]
    return (f"the kit ({_mb(man['kit_bytes'])}) and the tree ({_mb(man['tree_bytes'])}) come to {_mb(man['kit_bytes'] + man['tree_bytes'])}, "
            f"over the {_mb(LIMIT)} that may travel; the biggest wheels: " + ', '.join(f"{e['wheel']} {_mb(e['bytes'])}" for e in big))

def size(target:str='cp312')->int:
    "Print the kit's and the tree's sizes; 1 if together over LIMIT (or no kit)."
    kit = KITS[target]
    if not (kit/MANIFEST).exists(): log(f"no kit in {kit.relative_to(ROOT)}/: `python3 bench/gpu_kit.py build` first"); return 1
    man = json.loads((kit/MANIFEST).read_text())
    man['kit_bytes'], man['tree_bytes'] = folder_size(kit), tree_size()
    report(man, kit)
    if man['kit_bytes'] + man['tree_bytes'] > LIMIT: log(over_limit(man)); return 1
    return 0

def check_site(site:str)->int:
    """On the device, after the install: do the versions there (the image's are not .venv's) meet what the kit's
    distributions in `site` declare? Prints the misses as warnings, and the declared distributions that are not there at
    all (`needs` left them out: nothing the check runs imports them). Informative: returns 0."""
    import importlib.metadata as md
    try: from packaging.requirements import Requirement
    except ImportError: print('[gpu-kit] check-site: no packaging module here; not checked', flush=True); return 0
    bad, absent = [], set()
    for d in md.distributions(path=[site]):
        for r in d.requires or []:
            q = Requirement(r)
            if q.marker is not None and not q.marker.evaluate({'extra': ''}): continue
            try: v = md.version(q.name)
            except md.PackageNotFoundError: absent.add(q.name); continue
            if q.specifier and not q.specifier.contains(v, prereleases=True): bad.append(f"{d.metadata['Name']} wants {q.name}{q.specifier}, here {v}")
    print(f"[gpu-kit] check-site: {'WARNING, versions here that the kit does not declare itself compatible with: ' + '; '.join(bad) if bad else 'every declared version is met'}"
          + (f"; declared but left out (not imported by the check): {', '.join(sorted(absent))}" if absent else ''), flush=True)
    return 0

# ---------------------------------------------------------------- the rehearsal

def image_links(dest:Path)->list:
    """Symbolic links in `dest` to exactly the distributions of .venv whose names are in IMAGE: each one's top-level
    entries from its RECORD (dist-info included); a folder several distributions share (a namespace like nvidia/) is made
    here and gets the shared distributions' own entries inside it. Returns the linked distributions' names."""
    site = next((VENV/'lib').glob('python3*/site-packages'))
    owners, linked = {}, []                                      # top-level entry -> {dist: set of second-level entries}
    for rec in site.glob('*.dist-info/RECORD'):
        meta = (rec.parent/'METADATA').read_text(errors='replace')
        name = norm(re.search(r'^Name:\s*(\S+)', meta, re.M).group(1))
        for line in rec.read_text().splitlines():
            p = line.rsplit(',', 2)[0]
            if not p or p.startswith(('..', '/')): continue       # scripts in bin/, data outside site-packages
            parts = Path(p).parts
            owners.setdefault(parts[0], {}).setdefault(name, set())
            if len(parts) > 1: owners[parts[0]][name].add(parts[1])
    dest.mkdir(parents=True)
    for top, ds in owners.items():
        if top == '__pycache__': continue
        mine = [d for d in ds if d in IMAGE]
        if not mine: continue
        linked += mine
        if len(ds) == 1: (dest/top).symlink_to(site/top)
        else:                                                    # shared: link each IMAGE distribution's own entries
            (dest/top).mkdir(exist_ok=True)
            for d in mine:
                for e in ds[d]:
                    if not (dest/top/e).exists() and e != '__pycache__': (dest/top/e).symlink_to(site/top/e)
    return sorted(set(linked))

LEAK_CHECK = r'''
import sys, json, site, importlib.metadata as md
print(json.dumps(dict(path=sys.path, user_site=site.ENABLE_USER_SITE, prefix=sys.prefix, base=sys.base_prefix,
                      dists=sorted({d.metadata['Name'] for d in md.distributions()}))))
'''

def rehearse(args:list, keep:bool=False, pack_kit:bool|None=None)->int:
    "The device's run, here: see the module's docstring. Returns gpu_check.sh's exit status (1 if it passed but a part did not)."
    times, t0 = {}, time.monotonic()
    def step(name, t): times[name] = time.monotonic() - t; log(f"{name}: {times[name]:.1f} s")
    t = time.monotonic()
    build('cp311', pack_kit)
    step('kit (cp311)', t)
    work = Path(tempfile.mkdtemp(prefix='covseg-rehearsal-'))
    try:
        t = time.monotonic()
        base = Path(sys.base_prefix)/'bin'/f"python{sys.version_info.major}.{sys.version_info.minor}"
        base = base if base.exists() else Path(shutil.which('python3'))
        subprocess.run([str(base), '-m', 'venv', '--without-pip', str(work/'py')], check=True)   # pip: the image's (linked)
        py = work/'py'/'bin'/'python'
        linked = image_links(work/'image')
        tree = work/'tree'                       # the tree as it travels: no .venv, no covseg.egg-info, no ignored files
        for f in tree_files():
            (tree/f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT/f, tree/f, follow_symlinks=False)
        step(f"venv of {base}, links to {len(linked)} image distributions of .venv, a copy of the travelling tree", t)
        env = {k: v for k, v in os.environ.items() if not k.startswith(('PYTHON', 'VIRTUAL_ENV', 'CONDA', 'COVSEG_'))}
        env['PATH'] = os.pathsep.join(p for p in env.get('PATH', '').split(os.pathsep) if p and not Path(p).resolve().is_relative_to(VENV.resolve()))
        env.update(PYTHONNOUSERSITE='1', PYTHONPATH=str(work/'image'), COVSEG_PY=str(py), COVSEG_KIT=str(KITS['cp311']),
                   COVSEG_SITE=str(work/'site'), OUT=str(work/'out'), TMPDIR=str(work))
        # nothing of .venv but the IMAGE distributions: no .venv on sys.path, no user site, only IMAGE's metadata
        p = subprocess.run([str(py), '-c', LEAK_CHECK], env=env, cwd=tree, capture_output=True, text=True, check=True)
        seen = json.loads(p.stdout)
        venv = str(VENV.resolve())
        bad = [x for x in seen['path'] if x and (x.startswith(str(VENV)) or os.path.realpath(x).startswith(venv))]
        stray = [d for d in seen['dists'] if norm(d) not in IMAGE]
        log(f"the rehearsal's python: sys.path = {seen['path']}; user site: {seen['user_site']}; "
            f"{len(seen['dists'])} distributions, all in IMAGE: {not stray}")
        if bad or stray or seen['user_site'] or not str(seen['prefix']).startswith(str(work)):
            log(f"LEAK: .venv on sys.path: {bad}; not in IMAGE: {stray}; user site: {seen['user_site']}; prefix {seen['prefix']}"); return 1
        t = time.monotonic()
        log(f"bash bench/gpu_check.sh --cpu-test {' '.join(args)}  (COVSEG_PY={py}, COVSEG_KIT={KITS['cp311'].relative_to(ROOT)}/)")
        rc = subprocess.run(['bash', 'bench/gpu_check.sh', '--cpu-test', *args], env=env, cwd=tree).returncode
        step('bench/gpu_check.sh --cpu-test', t)
        out, problems = work/'out', []
        if rc: problems.append(f"bench/gpu_check.sh exited {rc}")
        for f in ('BENCHMARKS.md', 'gpu_check.log'):
            if not (out/f).exists(): problems.append(f"no $OUT/{f}")
        js = out/'gpu_check.json'
        if js.exists():
            res = json.loads(js.read_text())
            for name, part in res.get('parts', {}).items():
                st, note = part.get('status'), part.get('note') or ''
                log(f"  part {name}: {st} in {part.get('seconds', 0):.0f} s {note}")
                if not (st == 'ok' or (st in ('skipped', 'not run') and note)): problems.append(f"part {name}: {st} {note}")
            if res.get('rc', rc) != rc: problems.append(f"gpu_check.json says rc {res.get('rc')}, the script exited {rc}")
        else: log("no gpu_check.json (bench/gpu_check.py does not write it yet): judged by the exit status alone")
        log('rehearsal ' + ('PASSED' if not problems else 'FAILED: ' + '; '.join(problems)) + f" in {_since(t0)} ("
            + ', '.join(f"{k} {v:.0f} s" for k, v in times.items()) + ')')
        return rc if rc else int(bool(problems))
    finally:
        if keep: log(f"kept {work}")
        else: shutil.rmtree(work, ignore_errors=True)

def main(argv=None)->int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    b = sub.add_parser('build', help='build .whl/ (cp312, the device) or, with --rehearsal, .whl-rehearsal/ (cp311); check the size')
    b.add_argument('--rehearsal', action='store_true'); b.add_argument('--pack', action=argparse.BooleanOptionalAction, default=None,
                                                                      help='pack into kit.tar.xz (default: only when over the limit)')
    s = sub.add_parser('size', help="the kit's and the travelling tree's sizes; fails over 60 MB"); s.add_argument('--rehearsal', action='store_true')
    sub.add_parser('needs', help='print the distributions the check needs beyond the image, with versions')
    r = sub.add_parser('rehearse', help='the device run here on cp311: bash bench/gpu_check.sh --cpu-test [ARGS]')
    r.add_argument('--keep', action='store_true', help='keep the throwaway folders'); r.add_argument('args', nargs='*')
    r.add_argument('--pack', action=argparse.BooleanOptionalAction, default=None, help="the rehearsal kit packed or not (default: as `build` decides)")
    c = sub.add_parser('check-site', help="(on the device) are the kit's requirements met there?"); c.add_argument('site')
    a = ap.parse_args(argv)
    if a.cmd == 'build': build('cp311' if a.rehearsal else 'cp312', a.pack); return 0
    if a.cmd == 'size': return size('cp311' if a.rehearsal else 'cp312')
    if a.cmd == 'needs':
        for k, (n, v) in needs().items(): print(f"{n}=={v}")
        return 0
    if a.cmd == 'rehearse': return rehearse(a.args, a.keep, a.pack)
    if a.cmd == 'check-site': return check_site(a.site)

if __name__ == '__main__': sys.exit(main())
