"""Docs checks CI can run without Quarto (which cannot be installed everywhere).

1. `nbdev-proc-nbs` (run in-process, exactly as the command does, except that nbdev's Quarto auto-install
   -- curl + sudo dpkg -- is switched off): every notebook must process. Processing executes the cells
   marked `#| exec_doc` (and exports and imports), so the processed notebooks in `_proc/` hold the outputs
   Quarto would publish, the HTML viewers of `nbs/32_viewer.ipynb` among them.
2. The Quarto configuration must not drop cell outputs (`output: false` / `include: false` at site level).
3. Every processed notebook is rendered to HTML with nbconvert (no execution).
4. The hand-written sidebar (`nbs/sidebar.yml`, `custom_sidebar = true`) and the front page's notebook table must
   each name every notebook exactly once, the table as a link.
5. Every rendered page that holds covseg viewers is loaded in headless Chromium and every viewer is worked
   (slider, strip, overlay toggles, window, display mode: each must change the picture; no JavaScript errors),
   and the viewer notebook must hold at least one viewer.
6. With `--reader` (the pages `make docs` executed, `--nbs _exec/nbs`), what a reader sees: every caption that
   announces a picture, table or viewer is followed by an output; every teaching page shows a figure; no viewer is
   shown as text; every page carries the outputs' stamp; no output holds a local path; the viewers fit a 390-pixel
   phone screen; and screenshots of the front page, the training chapter, the evaluation page and the viewer page
   at desktop and phone width are written next to the pages (their paths printed).

Exits non-zero with a message naming each failure.
Usage: python tools/check_docs.py [--keep DIR] [--nbs DIR] [--reader]
"""
import argparse, re, shutil, sys, tempfile, time, traceback
from pathlib import Path

root = Path(__file__).resolve().parent.parent
VIEWER_NB = '32_viewer.ipynb'
GENERATED = ('sidebar.yml', 'nbdev.yml', '_quarto.yml')   # files in nbs/ that nbdev-proc-nbs may rewrite


def _short(e:BaseException)->str:
    "First and last line of an error (nbdev's include the whole cell source)."
    lines = [l for l in str(e).strip().splitlines() if l.strip()] or [type(e).__name__]
    return lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"


def proc_nbs(failures:list, notes:list, src:Path|None=None):
    "nbdev-proc-nbs on all notebooks of `src` (default nbs/; fresh `_proc/`), leaving the tracked files in nbs/ as they were."
    import nbdev.quarto as nq
    nq._ensure_quarto = lambda: None      # nbdev would otherwise try to download and sudo-install Quarto
    nbs = root/'nbs'
    src = Path(src or nbs).resolve()
    before = {n: (nbs/n).read_bytes() for n in GENERATED if (nbs/n).exists()}
    try:
        try: nq.nbdev_proc_nbs.__wrapped__(path=str(src), force=True)
        except BaseException as e:        # a notebook's error (the others are cancelled), or sys.exit from nbdev
            failures.append(f"nbdev-proc-nbs failed: {_short(e)}")
            # process the notebooks it left out one at a time, to name every failing one and check the rest
            for nb in sorted(src.glob('[!_.]*.ipynb')):
                if (root/'_proc'/nb.name).exists(): continue
                try: nq.nbdev_proc_nbs.__wrapped__(path=str(src), file_glob=nb.name)
                except BaseException as e2: failures.append(f"  {nb.name} does not process: {_short(e2)}")
    finally:
        for n, b in before.items():
            if (nbs/n).read_bytes() != b:
                (nbs/n).write_bytes(b)
                notes.append(f"nbdev-proc-nbs (forced) rewrote nbs/{n}; restored the committed version")


def check_quarto_config(failures:list):
    "Site-level settings that would drop the viewers' HTML outputs."
    import yaml
    for n in ('_quarto.yml', 'nbdev.yml'):
        p = root/'nbs'/n
        if not p.exists(): failures.append(f"nbs/{n} is missing"); continue
        cfg = yaml.safe_load(p.read_text()) or {}
        html_fmt = (cfg.get('format') or {}).get('html') or {}
        for where, d in (('execute', cfg.get('execute') or {}), ('format.html', html_fmt if isinstance(html_fmt, dict) else {})):
            for k in ('output', 'include'):
                if d.get(k) is False: failures.append(f"nbs/{n}: {where}.{k}: false drops every cell output, the HTML viewers too")


def check_navigation(failures:list):
    "Every notebook once in the sidebar and once, linked, in the front page's notebook table."
    import json, yaml
    nbs = root/'nbs'
    names = sorted(p.name for p in nbs.glob('[!_.]*.ipynb'))
    def walk(items):
        for it in items or []:
            if isinstance(it, str): yield it
            elif isinstance(it, dict): yield from walk(it.get('contents'))
    side = list(walk(((yaml.safe_load((nbs/'sidebar.yml').read_text()) or {}).get('website') or {}).get('sidebar', {}).get('contents')))
    for n in names:
        if side.count(n) != 1: failures.append(f"nbs/sidebar.yml lists {n} {side.count(n)} times (once expected)")
    for n in sorted(set(side) - set(names)): failures.append(f"nbs/sidebar.yml lists {n}, which is not a notebook in nbs/")
    index = '\n'.join(''.join(c['source']) for c in json.loads((nbs/'index.ipynb').read_text())['cells'])
    for n in names:
        if n != 'index.ipynb' and index.count(f"| [{n[:-6]}]({n}) |") != 1:
            failures.append(f"nbs/index.ipynb: the notebook table has no linked row for {n} ('| [{n[:-6]}]({n}) |')")


def _html_of(output)->str:
    h = output.get('data', {}).get('text/html', '')
    return h if isinstance(h, str) else ''.join(h)


def render(out:Path, failures:list)->dict:
    "Render each processed notebook to HTML with nbconvert; return {notebook name: number of viewers in it}."
    import nbformat
    from nbconvert import HTMLExporter
    exp = HTMLExporter(template_name='lab')
    viewers = {}
    for nb_path in sorted((root/'_proc').glob('*.ipynb')):
        try:
            nb = nbformat.read(nb_path, as_version=4)
            for c in nb.cells: c.metadata.pop('execution', None)   # nbdev's timing metadata is not valid nbformat
            body, _ = exp.from_notebook_node(nb)
            (out/nb_path.with_suffix('.html').name).write_text(body, encoding='utf-8')
        except Exception as e:
            failures.append(f"nbconvert could not render _proc/{nb_path.name}: {type(e).__name__}: {e}"); continue
        n = sum(_html_of(o).count('class="covseg-viewer"') for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []))
        if n: viewers[nb_path.name] = n
    return viewers


# --- what a reader of the executed pages sees (`--reader`) ---
# A caption announces a picture, table or viewer when its last sentence, ending in a colon, names one.
ANNOUNCES = re.compile(r"(picture|figure|plot|table|curves?|viewer|batch, as the network sees it|each point is one case|"
                       r"slices? of|in red|red\)|green\)|as pictures?)[^.:]*:\s*$", re.I)
SHOWN = ('image/png', 'image/jpeg', 'image/svg+xml', 'text/html', 'text/markdown')
NOT_RUN = ('cuda', 'data', 'net', 'slow', 'notest')
# Teaching pages: each must show at least one figure or viewer.
TEACHING = ('index', '03_phantom', '04_synth', '01_volume', '09_preprocess', '10_model', '12_loaders',
            '21_train_stages', '32_viewer', '33_lungmask', '34_evaluate', '35_report', '40_severity', '42_clinical')
SHOTS = ('index', '21_train_stages', '34_evaluate', '32_viewer')
MAX_ASSERT_SHARE = 0.27   # "about a quarter" of a teaching page's visible code, with the folded checks not counted
LOCAL = re.compile(r"(/tmp/|/var/folders/|/home/\w+|/root/|/Users/\w+)")


def _directives(src:str)->set:
    return {m.group(1) for m in re.finditer(r'^#\|\s*([\w-]+)', src, re.M)}


def _shows(cell)->bool:
    return any(k in o.get('data', {}) for o in cell.get('outputs', []) for k in SHOWN)


def reader_checks(src:Path, out:Path, failures:list):
    "The checks of what a reader sees on the executed pages in `src` (rendered into `out`); screenshots into `out`."
    import json
    sys.path.insert(0, str(root/'tools'))
    from make_docs import REFERENCE_ONLY, ASSERTION, STAMP_ID
    shares = {}
    for p in sorted(src.glob('[!_.]*.ipynb')):
        cells, name = json.loads(p.read_text())['cells'], p.stem
        if not any(c.get('id') == STAMP_ID for c in cells): failures.append(f"{p.name}: no outputs stamp under the title")
        if name in REFERENCE_ONLY: continue
        for i, c in enumerate(cells):
            if c['cell_type'] != 'markdown': continue
            last = ''.join(c['source']).strip().split('\n')[-1]
            if not ANNOUNCES.search(last): continue
            nxt = next((d for d in cells[i + 1:] if d['cell_type'] == 'code'), None)
            if nxt is None or _directives(''.join(nxt['source'])) & set(NOT_RUN) or 'export' in _directives(''.join(nxt['source'])): continue
            if not _shows(nxt): failures.append(f"{p.name}: the caption '...{last[-70:]}' is followed by no picture, table or viewer (cell {nxt.get('id')})")
        shown = [l for c in cells if c['cell_type'] == 'code' and not _directives(''.join(c['source'])) & {'hide', 'export', 'exporti', 'code-fold'}
                 for l in ''.join(c['source']).splitlines() if l.strip() and not l.startswith('#|')]
        shares[name] = sum(bool(ASSERTION.match(l)) for l in shown) / max(1, len(shown))
        if name in TEACHING and shares[name] > MAX_ASSERT_SHARE:
            failures.append(f"{p.name}: {shares[name]:.0%} of the code lines the page shows are assertions (at most {MAX_ASSERT_SHARE:.0%})")
        outs = [o for c in cells if c['cell_type'] == 'code' for o in c.get('outputs', [])]
        if name in TEACHING and not any(k in o.get('data', {}) for o in outs for k in ('image/png', 'image/jpeg')) \
                and not any('class="covseg-viewer"' in _html_of(o) for o in outs):
            failures.append(f"{p.name}: a teaching page with no figure")
        for o in outs:
            d = o.get('data', {})
            txt = ''.join(d.get('text/plain', '')) if isinstance(d.get('text/plain', ''), (str, list)) else ''
            if txt.startswith(('SliceViewer(', '<covseg.viewer.')) and 'text/html' not in d:
                failures.append(f"{p.name}: a viewer shown as text: {txt[:60]}")
            flat = json.dumps({k: v for k, v in d.items() if not k.startswith('image/')}) + ''.join(o.get('text', ''))
            if (m := LOCAL.search(flat)) or str(root) in flat:
                failures.append(f"{p.name}: an output holds a local path ({m.group(0) if m else str(root)}...)")
    print('assertions among the code lines shown:', ', '.join(f'{n} {v:.0%}' for n, v in shares.items()))
    shots(out, failures)


def shots(out:Path, failures:list):
    "Screenshots of the main pages at desktop and phone width; the viewers must fit the phone's width."
    from browser import chromium_driver
    made = []
    for w, h, tag in ((1200, 2200, 'desktop'), (390, 2400, 'phone')):
        with chromium_driver(max(w, 500), h) as d:     # headless Chromium's window is at least 500 wide: emulate the phone
            if w < 500: d.execute_cdp_cmd('Emulation.setDeviceMetricsOverride', dict(width=w, height=h, deviceScaleFactor=1, mobile=True))
            for name in SHOTS:
                page = out/f'{name}.html'
                if not page.exists(): failures.append(f"{page.name}: not rendered, no screenshot"); continue
                d.get(page.resolve().as_uri()); time.sleep(1.0)
                if name == '32_viewer':
                    d.execute_script("const v = document.querySelectorAll('.covseg-viewer'); if (v.length) v[v.length - 1].scrollIntoView()")
                    time.sleep(0.5)
                    wide = d.execute_script("return Array.from(document.querySelectorAll('.covseg-viewer canvas, .covseg-viewer .cv-strip'))"
                                            ".filter(e => e.getBoundingClientRect().width > window.innerWidth + 1).length")
                    if tag == 'phone' and wide: failures.append(f"{page.name}: {wide} viewer picture(s) or strip(s) wider than a {w}-pixel phone screen")
                f = out/'screenshots'/f'{name}-{tag}.png'; f.parent.mkdir(exist_ok=True)
                d.save_screenshot(str(f)); made.append(f)
    print('screenshots:', *[f'  {f}' for f in made], sep='\n')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--keep', help='write the rendered HTML pages to this folder and keep them')
    ap.add_argument('--nbs', help='the notebooks to process and render (default nbs/; `make docs`: _exec/nbs)')
    ap.add_argument('--reader', action='store_true', help="also check what a reader sees, and take screenshots (executed pages)")
    args = ap.parse_args()
    if args.reader and not args.keep: ap.error('--reader needs --keep (the screenshots go beside the pages)')
    t0, failures, notes = time.time(), [], []
    src = Path(args.nbs).resolve() if args.nbs else root/'nbs'
    proc_nbs(failures, notes, src)
    t_proc = time.time() - t0
    check_quarto_config(failures)
    check_navigation(failures)
    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix='covseg-docs-'))
    out.mkdir(parents=True, exist_ok=True)
    try:
        if not (root/'_proc').exists(): failures.append("_proc/ was not created")
        else:
            t1 = time.time()
            viewers = render(out, failures)
            t_render = time.time() - t1
            if not (root/'_proc'/VIEWER_NB).exists(): failures.append(f"_proc/{VIEWER_NB} is missing: the viewer notebook was not processed")
            elif VIEWER_NB not in viewers: failures.append(f"_proc/{VIEWER_NB} holds no HTML viewer output: its `#| exec_doc` cells did not display one")
            t2 = time.time()
            if viewers:
                from browser import check_in_browser     # tools/browser.py: this script's folder is on sys.path
                for name, n in viewers.items():
                    page = out/Path(name).with_suffix('.html').name
                    if not page.exists(): continue
                    try:
                        res = check_in_browser(page, min_viewers=n)
                        print(f"{name}: {res['viewers']} viewer(s) work in headless Chromium ({len(res['actions'])} actions, {res['seconds']:.1f} s)")
                    except Exception as e: failures.append(f"{name}: the HTML viewer does not work in the browser: {e}")
            if args.reader: reader_checks(src, out, failures)
            print(f"timings: nbdev-proc-nbs {t_proc:.1f} s, nbconvert {t_render:.1f} s, browser {time.time() - t2:.1f} s, total {time.time() - t0:.1f} s")
    finally:
        if not args.keep: shutil.rmtree(out, ignore_errors=True)
    for n in notes: print('note:', n)
    if failures:
        print('\ndocs check FAILED:', *[f'  - {f}' for f in failures], sep='\n', file=sys.stderr)
        sys.exit(1)
    print('docs check passed')


if __name__ == '__main__': main()   # nbdev-proc-nbs spawns worker processes, which import this file again
