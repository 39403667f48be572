"""Drives banger's Cockpit page in headless Chromium (Debian's chromium and chromium-driver,
through Selenium), the way a person would: logs in to Cockpit's own login page, opens the page
in Cockpit's shell and clicks its buttons.

Each step prints "STEP <name>: ok <detail>" or "STEP <name>: FAILED <why>" and saves a
screenshot of the whole window in --shots (NN-<step>.png); on failure it saves the page's text
and the browser's console log beside it and exits 1. Every wait is bounded.

Steps (--steps, comma-separated, run in order):
  list          every VM named by --vms is a row of the table
  start-kill    click Start on --start, run --kill-cmd at once (a VM killed from a shell);
                the first row turns running and the killed VM's row failed without a reload
  console       open --start's console; the guest's serial log shows
  create-delete create --create from --image in the form; its row appears stopped; delete it
                in the page (with the confirmation); its row disappears
  denied        (another user) no rows and the no-access message; Update is refused
  update        check for updates (--expect-version is offered), update, follow the stages to
                the end; the result is --expect-result, the page shows --expect-installed
                installed, and --start is still running
"""

import argparse
import os
import subprocess
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FRAME = "iframe[name='cockpit1:localhost/banger']"


class StepFailed(Exception):
    pass


class Page:
    def __init__(self, args):
        self.args = args
        self.shot_no = 0
        os.makedirs(args.shots, exist_ok=True)
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                  "--window-size=1440,1000", f"--user-data-dir={args.profile}"):
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        # Chromium sometimes exits while starting ("session not created"): try up to 3 times.
        for attempt in range(1, 4):
            try:
                self.d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
                break
            except WebDriverException as e:
                if attempt == 3:
                    raise
                print(f"  (Chromium did not start, attempt {attempt} of 3: {e.msg.splitlines()[0]})",
                      flush=True)
                time.sleep(2)
        self.d.set_page_load_timeout(60)

    # -- helpers ---------------------------------------------------------------------------
    def shot(self, name):
        self.shot_no += 1
        path = os.path.join(self.args.shots, f"{self.args.prefix}{self.shot_no:02d}-{name}.png")
        self.d.save_screenshot(path)
        return path

    def wait(self, what, check, timeout=30.0):
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            try:
                value = check()
                if value:
                    return value
            except WebDriverException as e:
                last = e
            time.sleep(0.2)
        raise StepFailed(f"timed out after {timeout:.0f} s waiting for {what}"
                         + (f" (last error: {last.msg})" if last else ""))

    def css(self, selector):
        return self.d.find_elements(By.CSS_SELECTOR, selector)

    def one(self, selector, what, timeout=30.0):
        return self.wait(what, lambda: next(iter(self.css(selector)), None), timeout)

    # The page re-renders a row whenever its VM changes, so elements found a moment ago may be
    # gone: what is read is read in one script, and what is clicked or typed into is found and
    # used in one attempt, retried while the wait lasts.
    def rows(self):
        return dict(self.d.execute_script(
            "return Array.from(document.querySelectorAll('#vm-rows tr[data-vm]'))"
            ".map(r => [r.dataset.vm, r.dataset.state])"))

    def use(self, selector, what, act, timeout=30.0):
        def attempt():
            for e in self.css(selector):
                if e.is_displayed() and e.is_enabled():
                    act(e)
                    return True
            return None
        self.wait(what, attempt, timeout)

    def click(self, selector, what, timeout=30.0):
        self.use(selector, f"{what} to be clicked", lambda e: e.click(), timeout)

    def type(self, selector, text, what):
        self.use(selector, f"{what} to take input", lambda e: e.send_keys(text))

    def alerts(self):
        return self.d.execute_script(
            "return Array.from(document.querySelectorAll('#alerts .pf-c-alert')).map(a => a.innerText)")

    # -- login -----------------------------------------------------------------------------
    def login(self):
        self.d.get(self.args.url.rstrip("/") + "/banger")
        self.type("#login-user-input", self.args.user, "Cockpit's login page")
        self.type("#login-password-input", self.args.password, "the password field")
        self.click("#login-button", "Log in")
        frame = self.one(FRAME, "the banger page's frame in Cockpit's shell", 60)
        self.d.switch_to.frame(frame)
        self.one("#banger", "banger's page in the frame")
        self.wait("the page to reach bangerd",
                  lambda: "Connecting" not in self.one("#summary", "the summary").text)
        # A mark that a reload would wipe: rows must change without one.
        self.d.execute_script("window.bangerNoReload = 1")
        return f"as {self.args.user}: {self.one('#summary', 'the summary').text!r}"

    def not_reloaded(self):
        if self.d.execute_script("return window.bangerNoReload") != 1:
            raise StepFailed("the page was reloaded (its mark is gone)")

    # -- steps -----------------------------------------------------------------------------
    def step_list(self):
        want = [v for v in self.args.vms.split(",") if v]
        self.wait(f"rows for {want}", lambda: all(v in self.rows() for v in want))
        return f"rows {self.rows()}"

    def step_start_kill(self):
        a = self.args
        if self.rows().get(a.start) == "running":
            raise StepFailed(f"{a.start} already runs; the step needs it stopped")
        self.click(f"#vm-rows tr[data-vm='{a.start}'] button[data-action='start']", f"Start on {a.start}")
        killed = subprocess.run(a.kill_cmd, shell=True, capture_output=True, text=True, timeout=30)
        if killed.returncode != 0:
            raise StepFailed(f"{a.kill_cmd!r} exited {killed.returncode}: {killed.stderr.strip()}")
        self.wait(f"{a.start} running and {a.killed} failed",
                  lambda: self.rows().get(a.start) == "running"
                  and self.rows().get(a.killed) == "failed", 120)
        self.not_reloaded()
        bad = [t for t in self.alerts() if "failed" in t.lower()]
        if bad:
            raise StepFailed(f"the page shows errors: {bad}")
        return f"rows {self.rows()} without a reload"

    def step_console(self):
        a = self.args
        self.click(f"#vm-rows tr[data-vm='{a.start}'] button[data-action='console']", f"Console on {a.start}")
        text = self.wait("the guest's serial console text",
                         lambda: (lambda t: t if a.console_text in t else None)(
                             self.one("#console-text", "the console").get_attribute("textContent")), 60)
        line = next(ln for ln in text.splitlines() if a.console_text in ln)
        return f"console shows {line.strip()[:80]!r} ({len(text)} characters)"

    def step_create_delete(self):
        a = self.args
        self.click("#create-open", "Create VM")
        self.type("#create-name", a.create, "the name field")
        Select(self.one("#create-image", "the image list")).select_by_value(a.image)
        self.click("#create-submit", "Create")
        self.wait(f"a stopped row for {a.create}", lambda: self.rows().get(a.create) == "stopped")
        created = self.shot("created")
        self.click(f"#vm-rows tr[data-vm='{a.create}'] button[data-action='delete']", f"Delete on {a.create}")
        self.click("#confirm-yes", "the confirmation's Delete")
        self.wait(f"{a.create}'s row to disappear", lambda: a.create not in self.rows())
        self.not_reloaded()
        return f"{a.create} appeared stopped ({os.path.basename(created)}) and was deleted; rows {self.rows()}"

    def step_denied(self):
        summary = self.one("#summary", "the summary").text
        if "not banger's owner" not in summary:
            raise StepFailed(f"the summary says {summary!r}, not that this user is not the owner")
        if self.rows():
            raise StepFailed(f"another user sees rows: {self.rows()}")
        empty = self.one("#vm-empty-title", "the empty state").text
        self.click("#update-check", "Check for updates")
        self.wait("an update to be offered", lambda: self.one("#update-start", "Update").is_enabled(), 60)
        self.click("#update-start", "Update")
        refused = self.one("#update-refused", "the refusal of the update", 60).text.replace("×", "")
        return f"no rows ({empty!r}); Update refused: {' '.join(refused.split())!r}"

    def step_update(self):
        a = self.args
        self.click("#update-check", "Check for updates")
        self.wait(f"v{a.expect_version} offered",
                  lambda: f"v{a.expect_version}" in self.one("#update-available", "Available").text, 60)
        self.click("#update-start", "Update")
        stages = []
        shot_taken = False
        end = time.monotonic() + 300
        result = None
        while time.monotonic() < end and result is None:
            try:
                for li in self.css("#update-stages li"):
                    s = li.get_attribute("data-stage")
                    if s and s not in stages:
                        stages.append(s)
                if stages and not shot_taken:
                    self.shot("update-running")
                    shot_taken = True
                done = self.css("#update-result")
                if done:
                    result = done[0].get_attribute("data-result"), done[0].text.replace("×", "")
            except WebDriverException:
                pass
            time.sleep(0.2)
        if result is None:
            raise StepFailed(f"the update did not end in 300 s; stages seen {stages}")
        if result[0] != a.expect_result:
            raise StepFailed(f"the update ended {result[0]!r}, not {a.expect_result!r}: {result[1]!r}")
        self.wait(f"the page to show v{a.expect_installed} installed",
                  lambda: self.one("#update-installed", "Installed").text == f"v{a.expect_installed}", 30)
        self.wait(f"{a.start} running again in the table",
                  lambda: self.rows().get(a.start) == "running", 60)
        self.not_reloaded()
        return (f"stages {' → '.join(stages)}; result {' '.join(result[1].split())!r}; "
                f"installed {self.one('#update-installed', 'Installed').text}; rows {self.rows()}")

    def fail_evidence(self, name):
        shot = self.shot(f"FAILED-{name}")
        try:
            body = self.d.execute_script("return document.body.innerText")
        except WebDriverException:
            body = "(unreadable)"
        self.d.switch_to.default_content()
        logs = ""
        try:
            logs = "\n".join(e["message"] for e in self.d.get_log("browser"))
        except WebDriverException:
            pass
        base = shot[:-4]
        with open(base + ".txt", "w") as f:
            f.write(f"{body}\n--- browser console ---\n{logs}\n")
        return shot, body, logs


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:9090")
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--shots", required=True)
    p.add_argument("--prefix", default="")
    p.add_argument("--profile", required=True)
    p.add_argument("--steps", required=True)
    p.add_argument("--vms", default="")
    p.add_argument("--start", default="")
    p.add_argument("--killed", default="")
    p.add_argument("--kill-cmd", default="")
    p.add_argument("--console-text", default="BANGER-GUEST: ready")
    p.add_argument("--create", default="")
    p.add_argument("--image", default="")
    p.add_argument("--expect-version", default="")
    p.add_argument("--expect-result", default="updated")
    p.add_argument("--expect-installed", default="")
    args = p.parse_args()
    page = Page(args)
    step = "login"
    try:
        detail = page.login()
        print(f"STEP login: ok {detail} ({os.path.basename(page.shot('login'))})", flush=True)
        for step in [s for s in args.steps.split(",") if s]:
            detail = getattr(page, "step_" + step.replace("-", "_"))()
            print(f"STEP {step}: ok {detail} ({os.path.basename(page.shot(step))})", flush=True)
    except (StepFailed, WebDriverException, subprocess.SubprocessError) as e:
        why = e.msg if isinstance(e, WebDriverException) else str(e)
        shot, body, logs = page.fail_evidence(step)
        print(f"STEP {step}: FAILED {why}", flush=True)
        print(f"  screenshot {shot}\n  page text:\n    " + "\n    ".join(body.splitlines()[:40]))
        if logs:
            print("  browser console:\n    " + "\n    ".join(logs.splitlines()[-20:]))
        return 1
    finally:
        page.d.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
