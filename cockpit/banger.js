/*
 * banger's Cockpit page.
 *
 * Everything here goes through cockpit.dbus() on the system bus, as the logged-in user:
 *   - VMs and images are the objects of bangerd's ObjectManager (/org/banger/Daemon1); rows
 *     appear, change and disappear from InterfacesAdded, PropertiesChanged and
 *     InterfacesRemoved, never from polling. Start, Stop and Delete are the objects' own
 *     methods; a new VM comes from Daemon1.CreateVm.
 *   - The update panel reads Root1's properties and follows the update job's object
 *     (/org/banger/Root1/job/N) and JobRemoved; the helper restarts during an update and the
 *     job outlives it, so the page follows the job, not the connection.
 * Every call names its argument types, so the bridge need not introspect first (introspection
 * is refused to users the bus policy keeps out, and the refusal must reach the page as such).
 * Text from the services is only ever set with textContent.
 */
"use strict";

const DAEMON = "org.banger.Daemon1";
const DAEMON_PATH = "/org/banger/Daemon1";
const VM_IFACE = DAEMON + ".Vm";
const IMAGE_IFACE = DAEMON + ".Image";
const ROOT = "org.banger.Root1";
const ROOT_PATH = "/org/banger/Root1";
const JOB_IFACE = ROOT + ".Job";
const PROPS = "org.freedesktop.DBus.Properties";
const CONSOLE_MAX = 256 * 1024;
const CONSOLE_FOLLOW_MS = 1000;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
        if (k === "class") node.className = v;
        else if (k === "text") node.textContent = v;
        else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
        else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
}

/* ---------------------------------------------------------------- alerts */

function errorText(ex) {
    if (!ex) return "unknown error";
    const name = ex.name && ex.name !== "Error" ? ex.name : "";
    const msg = ex.message || ex.problem || String(ex);
    if (name === "org.freedesktop.DBus.Error.AccessDenied")
        return "the system bus refused the call: only banger's owner and root may use bangerd";
    return name && !msg.includes(name) ? `${msg} (${name})` : msg;
}

function alert(kind, title, detail) {
    const item = el("li", { class: "pf-c-alert-group__item" });
    const close = el("button", {
        class: "pf-c-button pf-m-plain",
        type: "button",
        "aria-label": "Close",
        text: "×",
        onclick: () => item.remove(),
    });
    const box = el("div", { class: `pf-c-alert pf-m-inline pf-m-${kind}`, "data-kind": kind },
        el("p", { class: "pf-c-alert__title", text: title }),
        el("div", { class: "pf-c-alert__action" }, close));
    if (detail) box.append(el("div", { class: "pf-c-alert__description", text: detail }));
    item.append(box);
    $("alerts").append(item);
    return item;
}

function failed(what) {
    return (ex) => alert("danger", what, errorText(ex));
}

/* ---------------------------------------------------------------- the services */

const daemon = cockpit.dbus(DAEMON, { bus: "system" });
const root = cockpit.dbus(ROOT, { bus: "system" });
const vms = daemon.proxies(VM_IFACE, DAEMON_PATH);
const images = daemon.proxies(IMAGE_IFACE, DAEMON_PATH);
const helper = root.proxy(ROOT, ROOT_PATH);

/* ---------------------------------------------------------------- VM table */

const STATE_COLOUR = {
    running: "green",
    starting: "blue",
    stopping: "blue",
    failed: "red",
    unknown: "orange",
};
const busy = new Set();     // VM names with a call in flight

function stateLabel(state) {
    const colour = STATE_COLOUR[state];
    return el("span", { class: "pf-c-label" + (colour ? ` pf-m-${colour}` : ""), "data-state": state },
        el("span", { class: "pf-c-label__content", text: state }));
}

function vmAction(vm, label, kind, run) {
    return el("button", {
        class: `pf-c-button pf-m-${kind} pf-m-small`,
        type: "button",
        "data-action": label.toLowerCase(),
        onclick: () => {
            busy.add(vm.Name);
            renderVms();
            run()
                .catch(failed(`${label} ${vm.Name} failed`))
                .finally(() => { busy.delete(vm.Name); renderVms() });
        },
    }, label);
}

function memory(mib) {
    return mib >= 1024 && mib % 1024 === 0 ? `${mib / 1024} GiB` : `${mib} MiB`;
}

function vmRow(vm) {
    const running = vm.State === "running" || vm.State === "starting";
    const actions = el("div", { class: "banger-actions" });
    if (running)
        actions.append(vmAction(vm, "Stop", "secondary", () => vm.call("Stop", [])));
    else
        actions.append(vmAction(vm, "Start", "primary", () => vm.call("Start", [])));
    actions.append(el("button", {
        class: "pf-c-button pf-m-secondary pf-m-small",
        type: "button",
        "data-action": "console",
        onclick: () => openConsole(vm.Name),
    }, "Console"));
    if (!running) {
        actions.append(el("button", {
            class: "pf-c-button pf-m-danger pf-m-small",
            type: "button",
            "data-action": "delete",
            onclick: () => confirmDelete(vm),
        }, "Delete"));
    }
    if (busy.has(vm.Name))
        actions.querySelectorAll("button").forEach((b) => { b.disabled = true });
    const cell = (label, content) => el("td", { role: "cell", "data-label": label }, content);
    return el("tr", { role: "row", "data-vm": vm.Name, "data-state": vm.State, title: vm.path },
        cell("Name", el("strong", { text: vm.Name })),
        cell("State", stateLabel(vm.State)),
        cell("Address", vm.Address || "—"),
        cell("CPUs", String(vm.Cpus)),
        cell("Memory", memory(vm.MemoryMiB)),
        cell("Image", vm.Image),
        cell("Backend", vm.Backend || "—"),
        el("td", { role: "cell", class: "pf-c-table__action" }, actions));
}

let access = "pending";  // pending | ok | denied | absent

function renderVms() {
    const list = Object.values(vms).filter((p) => p && p.valid && p.Name !== undefined)
            .sort((a, b) => a.Name.localeCompare(b.Name));
    $("vm-rows").replaceChildren(...list.map(vmRow));
    const empty = list.length === 0;
    $("vm-empty").hidden = !empty;
    $("vm-table").hidden = empty;
    if (empty) {
        const [title, body] = {
            pending: ["Connecting…", ""],
            denied: ["No access to banger's VMs",
                `Only banger's owner${owner ? ` (${owner})` : ""} and root can see and manage these VMs.`],
            absent: ["bangerd is not running", "Start it with: sudo banger system start"],
            ok: ["No VMs", "Create one from an image with “Create VM”, or with: banger vm create NAME --image IMAGE"],
        }[access];
        $("vm-empty-title").textContent = title;
        $("vm-empty-body").textContent = body;
    }
    const running = list.filter((p) => p.State === "running").length;
    if (access === "ok")
        $("summary").textContent = `${list.length} VM${list.length === 1 ? "" : "s"}, ${running} running`;
}

function renderImages() {
    const select = $("create-image");
    const chosen = select.value;
    const names = Object.values(images).filter((p) => p && p.valid && p.Name !== undefined)
            .map((p) => p.Name).sort();
    select.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
    if (names.includes(chosen)) select.value = chosen;
    $("create-open").disabled = access !== "ok" || names.length === 0;
    $("create-open").title = names.length === 0 ? "No images: import or pull one with banger image" : "";
}

for (const ev of ["added", "changed", "removed"]) {
    vms.addEventListener(ev, renderVms);
    images.addEventListener(ev, renderImages);
}

/* ---------------------------------------------------------------- create and delete */

$("create-open").addEventListener("click", () => {
    $("create-form-wrap").hidden = false;
    $("create-name").focus();
});
$("create-cancel").addEventListener("click", () => { $("create-form-wrap").hidden = true });
$("create-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = $("create-name").value.trim();
    const image = $("create-image").value;
    const cpus = Number($("create-cpus").value);
    const mib = Number($("create-memory").value);
    const nameOk = name === "" || /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(name);
    const problems = [
        !nameOk && "the name may hold only a-z, 0-9 and - (not first or last), at most 63 characters",
        !image && "choose an image",
        !(Number.isInteger(cpus) && cpus >= 1) && "CPUs must be a whole number from 1",
        !(Number.isInteger(mib) && mib >= 16) && "memory must be a whole number of MiB, at least 16",
    ].filter(Boolean);
    if (problems.length) {
        alert("warning", "The VM was not created", problems.join("; "));
        return;
    }
    $("create-submit").disabled = true;
    daemon.call(DAEMON_PATH, DAEMON, "CreateVm", [name, image, cpus, mib], { type: "ssuu" })
            .then(([info]) => {
                $("create-form-wrap").hidden = true;
                $("create-name").value = "";
                alert("success", `Created ${info[1]}`, `from ${image}; start it with its Start button`);
            })
            .catch(failed(`Creating ${name || "a VM"} failed`))
            .finally(() => { $("create-submit").disabled = false });
});

let pendingDelete = null;

function confirmDelete(vm) {
    pendingDelete = vm;
    $("confirm-title").textContent = `Delete ${vm.Name}?`;
    $("confirm-body").textContent =
        `${vm.Name} and its disk are deleted for good. The image ${vm.Image} stays.`;
    $("confirm").hidden = false;
    $("confirm-no").focus();
}
$("confirm-no").addEventListener("click", () => { $("confirm").hidden = true; pendingDelete = null });
$("confirm-yes").addEventListener("click", () => {
    const vm = pendingDelete;
    $("confirm").hidden = true;
    pendingDelete = null;
    if (!vm) return;
    if (consoleVm === vm.Name) closeConsole();
    busy.add(vm.Name);
    vm.call("Delete", [])
            .catch(failed(`Deleting ${vm.Name} failed`))
            .finally(() => { busy.delete(vm.Name); renderVms() });
});

/* ---------------------------------------------------------------- console */

let consoleVm = null;
let consoleSeq = 0;      // which opening of the console a reply belongs to
let consoleOffset = 0;
let consoleTimer = null;
const decoder = cockpit.utf8_decoder();

function cleanConsole(text) {
    // The serial console carries terminal escapes; show the text, not the escapes.
    return text.replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, "")
            .replace(/\r\n/g, "\n")
            .replace(/[\x00-\x08\x0b-\x1f\x7f]/g, "");
}

function readConsole() {
    const name = consoleVm;
    const seq = consoleSeq;
    if (!name) return;
    daemon.call(DAEMON_PATH, DAEMON, "ReadVmLog", [name, consoleOffset], { type: "sx" })
            .then(([bytes, next]) => {
                if (consoleSeq !== seq) return;
                consoleOffset = next;
                const text = cleanConsole(decoder.decode(cockpit.base64_decode(bytes), { stream: true }));
                if (text) {
                    const pre = $("console-text");
                    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
                    let all = pre.textContent + text;
                    if (all.length > CONSOLE_MAX) all = all.slice(all.length - CONSOLE_MAX);
                    pre.textContent = all;
                    if (atEnd) pre.scrollTop = pre.scrollHeight;
                }
                consoleTimer = window.setTimeout(readConsole, CONSOLE_FOLLOW_MS);
            })
            .catch((ex) => {
                if (consoleSeq !== seq) return;
                $("console-text").textContent += `\n[console unavailable: ${errorText(ex)}]\n`;
            });
}

function openConsole(name) {
    closeConsole();
    consoleSeq += 1;
    consoleVm = name;
    consoleOffset = -65536;
    $("console-title").textContent = `Console of ${name}`;
    $("console-text").textContent = "";
    $("console-card").hidden = false;
    readConsole();
}

function closeConsole() {
    consoleSeq += 1;
    consoleVm = null;
    window.clearTimeout(consoleTimer);
    $("console-card").hidden = true;
}
$("console-close").addEventListener("click", closeConsole);

/* ---------------------------------------------------------------- update */

let owner = "";
let jobPath = null;
let jobProxy = null;
let stagesSeen = [];
let lastResult = null;

function bytes(n) {
    return n >= 1048576 ? `${(n / 1048576).toFixed(1)} MiB` : `${Math.round(n / 1024)} KiB`;
}

// Root1's properties as last read: from the proxy's PropertiesChanged, and read again whole
// (GetAll) whenever bangerd-root's bus name changes hands, since a restarted helper (as every
// update restarts it) announces nothing about the values it starts with.
const helperProps = {};

function helperFromProxy() {
    if (!helper.valid) return;
    for (const k of ["Owner", "InstalledVersion", "UpdateState", "ActiveJob", "Version"])
        if (helper[k] !== undefined) helperProps[k] = helper[k];
    renderHelper();
}

function refreshHelper() {
    root.call(ROOT_PATH, PROPS, "GetAll", [ROOT], { type: "s" })
            .then(([props]) => {
                for (const [k, v] of Object.entries(props)) helperProps[k] = v.v;
                renderHelper();
            })
            .catch((ex) => {
                $("update-installed").textContent = `bangerd-root is not answering: ${errorText(ex)}`;
            });
}

function renderHelper() {
    const h = helperProps;
    owner = h.Owner || owner;
    $("update-installed").textContent = h.InstalledVersion ? `v${h.InstalledVersion}` : "…";
    $("update-state").textContent = h.UpdateState || "…";
    const active = h.ActiveJob && h.ActiveJob !== "/" ? h.ActiveJob : null;
    if (active && active !== jobPath) followJob(active);
    $("update-cancel").hidden = !active;
    $("update-check").disabled = Boolean(active);
    if (active) $("update-start").disabled = true;
    renderVms();
}

function followJob(path) {
    if (jobPath !== path) {
        jobPath = path;
        stagesSeen = [];
        lastResult = null;
        if (jobProxy) jobProxy.removeEventListener("changed", renderJob);
        jobProxy = root.proxy(JOB_IFACE, path);
        jobProxy.addEventListener("changed", renderJob);
        jobProxy.wait(renderJob);
    }
    $("update-job").hidden = false;
}

function renderJob() {
    const job = jobProxy;
    if (!job || !job.valid || job.Stage === undefined) return;
    if (job.Stage && stagesSeen[stagesSeen.length - 1] !== job.Stage)
        stagesSeen.push(job.Stage);
    const pct = Math.round(100 * Math.min(1, Math.max(0, job.Progress || 0)));
    const target = job.TargetVersion ? ` to v${job.TargetVersion}` : "";
    $("update-stage").textContent = job.State === "finished"
        ? `Update${target}: ${job.Result}`
        : `Updating${target}: ${job.Stage}`;
    $("update-percent").textContent = `${pct}%`;
    $("update-bar").style.width = `${pct}%`;
    $("update-progress").querySelector("[role=progressbar]").setAttribute("aria-valuenow", String(pct));
    $("update-bytes").textContent = job.BytesTotal
        ? `${bytes(job.BytesDone)} of ${bytes(job.BytesTotal)} downloaded` : "";
    const bad = job.Result === "failed" || job.Result === "rolled-back" || job.Result === "canceled";
    const progress = $("update-progress");
    progress.classList.toggle("pf-m-success", job.Result === "updated");
    progress.classList.toggle("pf-m-danger", bad);
    $("update-stages").replaceChildren(...stagesSeen.map((s, i) => {
        const last = i === stagesSeen.length - 1;
        const cls = last && job.State !== "finished" ? "banger-current"
            : last && bad ? "banger-bad" : "";
        return el("li", { class: cls, "data-stage": s, text: s });
    }));
    if (job.State === "finished") finishJob(job);
}

function finishJob(job) {
    const key = `${jobPath}:${job.Result}`;
    if (lastResult === key) return;
    lastResult = key;
    $("update-cancel").hidden = true;
    $("update-check").disabled = false;
    const from = job.FromVersion ? `v${job.FromVersion}` : "the installed version";
    const to = job.TargetVersion ? `v${job.TargetVersion}` : "the new version";
    const why = job.Error ? job.Error[0].toUpperCase() + job.Error.slice(1) : "";
    const outcome = {
        "updated": ["success", `Updated ${from} → ${to}`, "Both services run the new version; running VMs were not touched."],
        "up-to-date": ["info", `banger ${from} is up to date`, ""],
        "dry-run": ["info", `Dry run of ${to} passed`, "Nothing installed was changed."],
        "rolled-back": ["danger", `Update to ${to} rolled back: ${from} is back`,
            `The new version was installed but failed its checks, so the previous one was restored. ${why}`],
        "failed": ["danger", `Update to ${to} failed`,
            why.includes("ROLLBACK INCOMPLETE") ? why : `Nothing was changed. ${why}`],
        "canceled": ["warning", "Update canceled", "Nothing was changed."],
    }[job.Result] || ["info", `Update ended: ${job.Result}`, why];
    if (job.Result === "updated" || job.Result === "rolled-back") {
        $("update-available").textContent = "not checked since the update";
        $("update-start").disabled = true;
    }
    refreshHelper();
    const item = alert(outcome[0], outcome[1], outcome[2].trim());
    item.id = "update-result";
    item.setAttribute("data-result", job.Result);
}

root.subscribe({ interface: ROOT, path: ROOT_PATH, member: "JobRemoved" }, (_path, _iface, _signal, args) => {
    // The job's object stays on the bus after it ends: read its final properties from there.
    const path = args[1];
    if (path !== jobPath) followJob(path);
    root.call(path, PROPS, "GetAll", [JOB_IFACE], { type: "s" })
            .then(([props]) => {
                if (!jobProxy || jobProxy.path !== path) return;
                const plain = {};
                for (const [k, v] of Object.entries(props)) plain[k] = v.v;
                renderJobFrom(plain);
            })
            .catch(() => renderJob());
});

function renderJobFrom(props) {
    // A final reading of the job, for when the helper restarted and the proxy missed the end.
    const saved = jobProxy;
    jobProxy = { valid: true, path: saved.path, ...props };
    try {
        renderJob();
    } finally {
        jobProxy = saved;
    }
}

$("update-check").addEventListener("click", () => {
    $("update-check").disabled = true;
    $("update-available").textContent = "checking…";
    root.call(ROOT_PATH, ROOT, "CheckForUpdate", [], { type: "" })
            .then(([current, latest, available]) => {
                $("update-available").textContent = available
                    ? `v${latest} (installed v${current})` : `none: v${current} is the latest`;
                $("update-start").disabled = !available;
            })
            .catch((ex) => {
                $("update-available").textContent = "could not check";
                failed("Checking for updates failed")(ex);
            })
            .finally(() => { $("update-check").disabled = false });
});

$("update-start").addEventListener("click", () => {
    $("update-start").disabled = true;
    document.getElementById("update-result")?.remove();
    root.call(ROOT_PATH, ROOT, "Update", [{}], { type: "a{sv}" })
            .then(([path]) => followJob(path))
            .catch((ex) => {
                $("update-start").disabled = false;
                const denied = ex.name === "org.banger.Error.NotAuthorized" ||
                    ex.name === "org.freedesktop.DBus.Error.AccessDenied" ||
                    ex.name === "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired";
                const item = alert("danger", "The update was not started",
                    denied
                        ? `${errorText(ex)}. Updating banger needs an administrator's password, which this page cannot ask for: run “banger update” in a terminal, or let the owner update without one (polkit rule 49-banger-owner.rules.example, see banger-dbus(7)).`
                        : errorText(ex));
                item.id = "update-refused";
            });
});

$("update-cancel").addEventListener("click", () => {
    if (!jobPath) return;
    root.call(jobPath, JOB_IFACE, "Cancel", [], { type: "" }).catch(failed("Canceling the update failed"));
});

helper.addEventListener("changed", helperFromProxy);
helper.wait(helperFromProxy);
root.addEventListener("owner", (_ev, name) => {
    if (name) refreshHelper();
});
refreshHelper();

/* ---------------------------------------------------------------- start */

function probeDaemon() {
    daemon.call(DAEMON_PATH, PROPS, "Get", [DAEMON, "Version"], { type: "ss" })
            .then(([version]) => {
                access = "ok";
                $("summary").textContent = `bangerd v${version.v}`;
            })
            .catch((ex) => {
                access = ex.name === "org.freedesktop.DBus.Error.AccessDenied" ? "denied" : "absent";
                $("summary").textContent = access === "denied"
                    ? "You are not banger's owner: its VMs are not shown to you."
                    : `bangerd is not answering: ${errorText(ex)}`;
            })
            .finally(() => { renderVms(); renderImages() });
}

daemon.addEventListener("owner", (_ev, name) => {
    if (name) probeDaemon();
});
probeDaemon();
