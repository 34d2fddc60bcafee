"""Browser test harness for covseg's HTML slice viewer (a test tool, not part of the library).

`check_in_browser` works every viewer on a page in headless Chromium (selenium with Debian's `chromium` and
`chromium-driver`; `make browser` installs them); `html_frame` computes in Python what a viewer's first frame must
be, from the images embedded in its payload. Used by the browser tests of `nbs/32_viewer.ipynb` and by
`tools/check_docs.py`.
"""
import base64, contextlib, io, os, shutil, tempfile, time
from pathlib import Path
import numpy as np
from PIL import Image
from covseg.draw import compose, join_panels, panel_layers


@contextlib.contextmanager
def chromium_driver(width:int=1400, height:int=1000):
    "A headless Chromium selenium driver that keeps the browser's console log, in a temporary profile removed afterwards."
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise RuntimeError("selenium is needed for browser checks: "
                           "pip install selenium (it is in covseg's dev extra)") from None
    browser = shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')
    driver = shutil.which('chromedriver')
    if not (browser and driver):
        raise RuntimeError("headless Chromium and chromedriver are needed for browser checks: run `make browser` "
                           "(Debian: apt-get install chromium chromium-driver)")
    work = Path(tempfile.mkdtemp(prefix='covseg-chromium-'))
    o = webdriver.ChromeOptions(); o.binary_location = browser
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
              '--force-device-scale-factor=1', f'--window-size={width},{height}', f'--user-data-dir={work/"profile"}'):
        o.add_argument(a)
    o.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    try:
        d = webdriver.Chrome(service=Service(driver, env={**os.environ, 'TMPDIR': str(work)}), options=o)
        try: yield d
        finally: d.quit()
    finally: shutil.rmtree(work, ignore_errors=True)


def _shot(el)->np.ndarray: return np.asarray(Image.open(io.BytesIO(el.screenshot_as_png)).convert('RGB'))


def _canvas_pixels(driver, canvas)->np.ndarray:
    uri = driver.execute_script("return arguments[0].toDataURL('image/png')", canvas)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(',', 1)[1]))).convert('RGB'))


def _act(driver, el, name:str):
    "Work control `name` of a viewer the way a user would."
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select
    if name == 'slider':
        el.send_keys(Keys.ARROW_LEFT if el.get_attribute('value') == el.get_attribute('max') else Keys.ARROW_RIGHT)
    elif name in ('truth', 'pred'): el.click()
    elif name == 'window': Select(el).select_by_value('mediastinum')
    elif name == 'mode': Select(el).select_by_value('blend')
    elif name == 'strip':                      # click the strip cell of another slice than the one shown
        cur = driver.execute_script("return arguments[0].closest('.covseg-viewer').querySelector('.cv-slider').value", el)
        cells = [c for c in el.find_elements('css selector', 'span[data-i]') if c.get_attribute('data-i') != cur]
        driver.execute_script("arguments[0].click()", cells[len(cells) // 3])
    else: raise ValueError(f"unknown control {name!r}")


_STATES = "return Array.from(document.querySelectorAll('.covseg-viewer')).map(r => r.dataset.drawn)"


def check_in_browser(paths, # an HTML page with covseg viewers, or a list of pages
                     min_viewers:int=1, # fail if a page has fewer
                     controls=('slider', 'strip', 'truth', 'window', 'mode'), # controls to work, in order, where a viewer has them
                     timeout:float=20., # seconds to wait for a frame
                    )->dict: # viewers, actions done, first frames (RGB arrays), console messages, seconds
    "Work the controls of every viewer on the pages in headless Chromium; fail unless each changes its picture (and no other) and the console is free of errors."
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    t0, done, first, console, n = time.time(), [], [], [], 0
    with chromium_driver() as driver:
        for path in paths:
            driver.get(Path(path).resolve().as_uri())
            roots = driver.find_elements(By.CSS_SELECTOR, '.covseg-viewer')
            if len(roots) < min_viewers:
                raise AssertionError(
                    f"{path}: {len(roots)} covseg viewer(s) on the page, expected at least {min_viewers}")
            ids = [r.get_attribute('id') for r in roots]
            if len(set(ids)) != len(ids): raise AssertionError(f"{path}: viewer ids are not unique: {ids}")
            def wait(ok, what):
                try:
                    return WebDriverWait(driver, timeout, poll_frequency=0.02).until(
                        lambda d: (lambda st: st if ok(st) else None)(d.execute_script(_STATES)))
                except Exception:
                    raise AssertionError(
                        f"{path}: {what} within {timeout} s (viewer states {driver.execute_script(_STATES)})") from None
            state = wait(lambda st: all(st), 'not every viewer drew its first frame')
            for j, root in enumerate(roots):
                driver.execute_script("arguments[0].scrollIntoView()", root)
                canvas = root.find_element(By.CSS_SELECTOR, '.cv-canvas')
                first.append(_canvas_pixels(driver, canvas)); before = _shot(canvas)
                for name in controls:
                    els = root.find_elements(By.CSS_SELECTOR, f'.cv-{name}')
                    if not els: continue
                    _act(driver, els[0], name)
                    new = wait(lambda st: st[j] != state[j], f"viewer {ids[j]} drew no new frame after '{name}'")
                    if [s for k, s in enumerate(new) if k != j] != [s for k, s in enumerate(state) if k != j]:
                        raise AssertionError(f"{path}: '{name}' on viewer {ids[j]} changed another viewer")
                    after = _shot(canvas)
                    if before.shape == after.shape and np.array_equal(before, after):
                        raise AssertionError(
                            f"{path}: viewer {ids[j]}: the picture did not change after '{name}' (state {new[j]})")
                    done.append(name); before, state = after, new
            n += len(roots)
            log = driver.get_log('browser'); console += [e['message'] for e in log]
            errors = [e['message'] for e in log if e['level'] == 'SEVERE' and e.get('source') != 'network']
            if errors: raise AssertionError(f"{path}: JavaScript errors in the console: {errors}")
    return dict(viewers=n, actions=done, first=first, console=console, seconds=time.time() - t0)


def _decode(uri:str)->np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(',', 1)[1]))).convert('RGB'))


def html_frame(payload:dict, # a viewer's `_payload()`
               i:int, # index into the embedded slices
               window:str='lung', show_truth:bool=True, show_pred:bool=True, mode:str='side',
              )->np.ndarray: # uint8 RGB
    "What the HTML viewer draws for embedded slice `i`, computed in Python from the embedded images."
    code = _decode(payload['ct'][i])[..., 0]
    m = _decode(payload['mask'][i]) if payload['mask'][i] else np.zeros(code.shape + (3,), np.uint8)
    t = m[..., 0] > 127 if payload['truth'] else None
    p = m[..., 1] > 127 if payload['pred'] else None
    grey = np.asarray(payload['luts'][window], np.uint8)[code]
    return join_panels([compose(grey, L) for L in panel_layers(t, p, show_truth, show_pred, mode)])
