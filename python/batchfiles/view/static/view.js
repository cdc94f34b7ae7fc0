// batchfiles view: the page. Reads the local server's JSON API (never storage), polls it every few seconds,
// and tails logs over Server-Sent Events. Text from storage is only ever set as textContent.
"use strict";

(() => {
  const POLL_MS = 2000;
  const CHUNK = 200; // tasks added to the list each time its end comes into view
  const PAGE = 500; // the API's largest page

  const $ = (id) => document.getElementById(id);

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "text") node.textContent = value;
      else if (key === "data") Object.assign(node.dataset, value);
      else node[key] = value;
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  function size(bytes) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
  }

  function when(iso) {
    return iso ? iso.replace("T", " ") : "-";
  }

  async function getJSON(url) {
    const response = await fetch(url, { cache: "no-store" });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
    return body;
  }

  function status(text, error = false) {
    const node = $("status");
    node.textContent = text;
    node.classList.toggle("error", error);
  }

  function badge(state, code) {
    const failed = state === "exited" && code !== 0;
    const text = state === "exited" ? `exited ${code}` : state;
    return el("span", { className: `state state-${failed ? "failed" : state}`, text, title: text });
  }

  // --- the job --------------------------------------------------------------------------------------------

  function renderJob(job) {
    $("job-id").textContent = job.job_id;
    document.title = `batchfiles view: ${job.job_id}`;
    const facts = $("job-facts");
    const t = job.tasks;
    const pairs = [
      ["container", job.container],
      ["tasks", `${t.all}: ${t.running} running, ${t.exited} exited (${t.failed} failed), ${t.unknown} unknown`],
    ];
    if (job.skipped) pairs.push(["not outputs", `${job.skipped} blobs outside the conventions (not shown)`]);
    facts.replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
    const body = $("kinds").tBodies[0];
    const rows = [];
    for (const [side, kinds] of [["job", job.job_kinds], ["tasks", job.task_kinds]]) {
      for (const [kind, total] of Object.entries(kinds)) {
        rows.push(el("tr", {},
          el("td", { text: `${kind} (${side})` }),
          el("td", { className: "num", text: String(total.count) }),
          el("td", { className: "num", text: size(total.bytes) })));
      }
    }
    body.replaceChildren(...rows);
    renderFiles($("job-outputs"), groupByKind(job.job_outputs), "job's outputs");
  }

  function groupByKind(outputs) {
    const kinds = {};
    for (const output of outputs) (kinds[output.kind] = kinds[output.kind] || []).push(output);
    return kinds;
  }

  // --- outputs, grouped by kind (job and task views) -------------------------------------------------------

  // Live logs. A browser opens at most 6 connections to one server (HTTP/1.1), and each live log holds one:
  // a task with more open logs than that would leave none for the page's own requests, and the page would
  // stop updating. So at most MAX_LIVE logs are tailed at once; the others wait their turn (a log that ends
  // frees its place), and a click on a waiting log's "follow live" tails it in place of the oldest.
  const MAX_LIVE = 2;
  const logs = []; // {url, pre, state, button, source}: live ones have a source; in the order they were added

  function renderFiles(container, kinds, what) {
    const seen = new Set();
    for (const [kind, outputs] of Object.entries(kinds)) {
      let section = container.querySelector(`section.kind[data-kind="${CSS.escape(kind)}"]`);
      if (!section) {
        section = el("section", { className: "kind", data: { kind } }, el("h3", { text: kind }));
        container.append(section);
      }
      seen.add(section);
      const listed = new Set();
      for (const output of outputs) {
        listed.add(output.url);
        let row = section.querySelector(`div.file[data-url="${CSS.escape(output.url)}"]`);
        if (!row) {
          row = fileRow(output);
          section.append(row);
        }
        row.querySelector(".size").textContent = size(output.size);
        row.querySelector(".time").textContent = when(output.modified);
        const img = row.querySelector("img.inline");
        if (img && img.dataset.modified !== output.modified) {
          img.dataset.modified = output.modified;
          img.src = `${output.url}?v=${encodeURIComponent(output.modified || "")}`;
        }
      }
      for (const row of section.querySelectorAll("div.file")) {
        if (!listed.has(row.dataset.url)) { // gone from storage: its row, and its log's place if it had one
          forget(row.dataset.url.replace("/blob/task/", "/api/log/"));
          row.remove();
        }
      }
    }
    for (const section of container.querySelectorAll("section.kind")) if (!seen.has(section)) section.remove();
    if (!container.children.length) container.replaceChildren(el("p", { className: "more", text: `no ${what}` }));
    else for (const p of container.querySelectorAll(":scope > p.more")) p.remove();
  }

  function fileRow(output) {
    const row = el("div", { className: "file", data: { url: output.url } },
      el("a", { href: output.url, text: output.path, className: "name", rel: "noopener noreferrer",
        target: output.image ? "_blank" : "" }), // an image opens in a tab; anything else downloads
      el("span", { className: "size" }),
      el("span", { className: "time" }),
      el("a", { href: output.url, text: "download", download: output.path.split("/").pop() }));
    if (output.image) row.append(el("img", { className: "inline", alt: output.path, data: { modified: "" } }));
    if (output.kind === "TaskLog" && output.url.startsWith("/blob/task/")) {
      const state = el("span", { className: "log-state", text: "waiting…" });
      const button = el("button", { type: "button", className: "follow", text: "follow live", hidden: true });
      const pre = el("pre", { className: "log" });
      row.append(el("span", { className: "log-state-row" }, state, " ", button), pre);
      const log = { url: output.url.replace("/blob/task/", "/api/log/"), pre, state, button, source: null };
      button.addEventListener("click", () => {
        const live = logs.filter((l) => l.source);
        if (live.length >= MAX_LIVE) pause(live[0]);
        follow(log);
        schedule();
      });
      logs.push(log);
      schedule();
    }
    return row;
  }

  function schedule() {
    for (const log of logs) {
      if (logs.filter((l) => l.source).length >= MAX_LIVE) break;
      if (!log.source && !log.done) follow(log); // a paused log is last in line: its turn comes again
    }
    for (const log of logs) {
      const waiting = !log.source && !log.done;
      log.button.hidden = !waiting;
      if (waiting) {
        log.state.textContent = log.paused ? "paused" : `waiting: ${MAX_LIVE} logs are tailed at once`;
      }
    }
  }

  function pause(log) {
    log.source.close();
    log.source = null;
    log.paused = true;
    logs.push(...logs.splice(logs.indexOf(log), 1)); // last in line
  }

  function finish(log, why) {
    if (log.source) log.source.close();
    log.source = null;
    log.done = true;
    log.state.textContent = why;
    log.button.hidden = true;
    schedule();
  }

  function forget(url) {
    const index = logs.findIndex((l) => l.url === url);
    if (index < 0) return;
    const [log] = logs.splice(index, 1);
    if (log.source) log.source.close();
    schedule();
  }

  function follow(log) {
    const { pre, state } = log;
    pre.replaceChildren();
    const text = document.createTextNode("");
    pre.append(text);
    const source = new EventSource(log.url);
    log.source = source;
    log.paused = false;
    log.button.hidden = true;
    state.textContent = "connecting…";
    let started = false;
    let cut = false;
    source.addEventListener("start", (event) => {
      if (!started) cut = JSON.parse(event.data).offset > 0;
      started = true;
      state.textContent = "live";
    });
    source.onmessage = (event) => {
      let chunk = JSON.parse(event.data);
      if (cut) { // started inside the log: from its first whole line
        const newline = chunk.indexOf("\n");
        chunk = newline < 0 ? "" : chunk.slice(newline + 1);
        if (newline >= 0) cut = false;
        if (!text.length) text.appendData("… (earlier lines not shown)\n");
      }
      const bottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 16;
      text.appendData(chunk);
      if (text.length > 2000000) text.deleteData(0, text.length - 1500000);
      if (bottom) pre.scrollTop = pre.scrollHeight;
    };
    source.addEventListener("reset", () => {
      text.data = "";
      state.textContent = "replaced: shown again from its start";
    });
    source.addEventListener("end", () => finish(log, "closed by its writer"));
    source.addEventListener("failed", (event) => finish(log, `stopped: ${JSON.parse(event.data)}`));
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) finish(log, "disconnected");
      else state.textContent = "reconnecting…";
    };
  }

  function stopFollowing() {
    for (const log of logs) if (log.source) log.source.close();
    logs.length = 0;
  }

  // --- the tasks ---------------------------------------------------------------------------------------------

  let filter = "all";
  let wanted = CHUNK;
  let total = 0;
  const rows = new Map(); // task id -> {li, sig}

  function taskRow(task) {
    const sig = JSON.stringify(task);
    const known = rows.get(task.id);
    if (known && known.sig === sig) return known.li;
    const failed = task.state === "exited" && task.exit_code !== 0;
    const counts = Object.entries(task.kinds).map(([kind, t]) => `${kind} ${t.count} · ${size(t.bytes)}`);
    const oldThumbs = known && known.previews === JSON.stringify(task.previews) ? known.li.querySelector(".thumbs") : null;
    const thumbs = oldThumbs || el("div", { className: "thumbs" },
      ...task.previews.map((p) => el("img", { src: p.url, alt: p.path, title: p.path })));
    const li = el("li", { className: `task${failed ? " failed" : ""}`, data: { id: task.id } },
      el("a", { className: "card", href: `#task/${encodeURIComponent(task.id)}` },
        el("div", { className: "head" }, el("span", { className: "id", text: task.id, title: task.id }),
          badge(task.state, task.exit_code)),
        el("div", { className: "counts", text: counts.join("  ·  ") || "no outputs" }),
        thumbs));
    if (known) known.li.replaceWith(li);
    rows.set(task.id, { li, sig, previews: JSON.stringify(task.previews) });
    return li;
  }

  async function refreshTasks() {
    const tasks = [];
    for (let offset = 0; offset < wanted; offset += PAGE) {
      const limit = Math.min(PAGE, wanted - offset);
      const page = await getJSON(`/api/tasks?offset=${offset}&limit=${limit}&state=${encodeURIComponent(filter)}`);
      total = page.total;
      tasks.push(...page.tasks);
      if (offset + limit >= total) break;
    }
    const list = $("tasks");
    const keep = new Set(tasks.map((t) => t.id));
    for (const [id, row] of rows) {
      if (!keep.has(id)) {
        row.li.remove();
        rows.delete(id);
      }
    }
    tasks.forEach((task, index) => {
      const li = taskRow(task);
      if (list.children[index] !== li) list.insertBefore(li, list.children[index] || null);
    });
    while (list.children.length > tasks.length) list.lastElementChild.remove();
    $("task-count").textContent = `(${total})`;
    $("more").textContent = tasks.length < total ? `${tasks.length} of ${total} shown: scroll for more` : "";
  }

  // --- a task's view -------------------------------------------------------------------------------------

  let shown = null; // the task id of the open view

  function taskFromHash() {
    const match = /^#task\/(.+)$/.exec(location.hash);
    return match ? decodeURIComponent(match[1]) : null;
  }

  async function refreshDetail() {
    const id = taskFromHash();
    if (id !== shown) {
      stopFollowing();
      $("detail-outputs").replaceChildren();
      shown = id;
    }
    $("detail").hidden = id === null;
    if (id === null) return;
    const task = await getJSON(`/api/tasks/${encodeURIComponent(id)}`);
    if (shown !== id) return;
    $("detail-title").textContent = `task ${task.id}`;
    const counts = Object.entries(task.kinds).map(([kind, t]) => `${t.count} ${kind} (${size(t.bytes)})`);
    $("detail-state").replaceChildren(badge(task.state, task.exit_code), ` ${counts.join(", ")}`);
    renderFiles($("detail-outputs"), task.outputs, "outputs");
  }

  // --- polling -------------------------------------------------------------------------------------------

  let timer = null;
  let polling = false;
  let again = false; // asked for while a poll was running: one more right after it

  async function poll() {
    if (polling) {
      again = true;
      return;
    }
    polling = true;
    clearTimeout(timer);
    try {
      const job = await getJSON("/api/job");
      renderJob(job);
      await refreshTasks();
      await refreshDetail();
      if (job.failure) status(`storage: ${job.failure} (showing what was listed before)`, true);
      else status(`updated ${new Date().toLocaleTimeString()}`);
    } catch (error) {
      status(String(error.message || error), true);
    }
    polling = false;
    timer = setTimeout(poll, again ? 0 : POLL_MS);
    again = false;
  }

  function start() {
    $("filter").addEventListener("change", (event) => {
      filter = event.target.value;
      wanted = CHUNK;
      poll();
    });
    $("detail-close").addEventListener("click", (event) => {
      event.preventDefault();
      history.pushState(null, "", location.pathname);
      poll();
    });
    window.addEventListener("hashchange", poll);
    new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && rows.size < total) {
        wanted = rows.size + CHUNK;
        poll();
      }
    }).observe($("more"));
    poll();
  }

  start();
})();
