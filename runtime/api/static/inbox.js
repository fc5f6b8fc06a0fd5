// The inbox page: keyboard navigation and actions through the JSON API (session cookie).
(() => {
  const rows = () => [...document.querySelectorAll("#items tbody tr[data-id]")];
  let current = -1;

  async function api(path, body) {
    const res = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                                   body: JSON.stringify(body), credentials: "same-origin"});
    const data = await res.json().catch(() => ({}));
    return {ok: res.ok, status: res.status, data};
  }

  // Unknown outcomes: a person says what happened (resend goes through the gate again).
  document.querySelectorAll("#checks button[data-outcome]").forEach((button) => {
    button.addEventListener("click", async () => {
      const row = button.closest("tr");
      const res = await api(`/outcomes/${row.dataset.key}/resolve`, {outcome: button.dataset.outcome});
      if (res.ok) row.remove();
      else alert(res.data.detail || `failed (${res.status})`);
    });
  });

  async function show(i) {
    const list = rows();
    if (!list.length) return;
    current = Math.max(0, Math.min(i, list.length - 1));
    list.forEach((r, k) => r.classList.toggle("current", k === current));
    const row = list[current];
    row.focus();
    const res = await fetch(`/inbox/${row.dataset.id}/panel`, {credentials: "same-origin"});
    document.getElementById("panel").innerHTML = await res.text();
    wirePanel();
  }

  function say(text, ok) {
    const el = document.getElementById("result");
    if (el) { el.textContent = text; el.className = ok ? "ok" : "error"; }
  }

  function done(row, label) {
    row.classList.add("decided");
    row.dataset.can = "";
    row.querySelector(".pick").disabled = true;
    row.lastElementChild.textContent = label;
  }

  function selected() { const r = rows()[current]; return r && r.dataset.can ? r : null; }

  async function decide(verdict, reason) {
    const row = selected();
    if (!row) return;
    const r = await api(`/approvals/${row.dataset.id}/decision`, {verdict, payload_hash: row.dataset.hash, reason: reason || ""});
    if (r.ok) { done(row, r.data.status); say(`${verdict}d: ${r.data.status}`, true); }
    else say(`${r.status}: ${JSON.stringify(r.data.detail)}`, false);
  }

  function askReason() {
    return new Promise((resolve) => {
      const dialog = document.getElementById("reason-dialog");
      const box = document.getElementById("reason");
      box.value = "";
      dialog.onclose = () => resolve(dialog.returnValue === "ok" && box.value.trim() ? box.value.trim() : null);
      dialog.showModal();
      box.focus();
    });
  }

  async function reject() { const why = await askReason(); if (why) await decide("reject", why); }

  async function saveEdit() {
    const row = selected();
    const form = document.getElementById("edit-form");
    if (!row || !form) return;
    const detail = document.querySelector(".detail");
    const args = {};
    for (const el of form.elements) {
      if (!el.name) continue;
      const n = Number(el.value);
      args[el.name] = el.value !== "" && !Number.isNaN(n) && el.tagName === "INPUT" ? n : el.value;
    }
    const r = await api(`/approvals/${detail.dataset.id}/edit`, {payload_hash: detail.dataset.hash, args});
    if (!r.ok) return say(`${r.status}: ${JSON.stringify(r.data.detail)}`, false);
    if (r.data.new_approval_id) {
      say(`edited: gated again, now needs ${r.data.remaining_roles.join(", ")}`, true);
      setTimeout(() => location.reload(), 600);
    } else {
      done(row, "denied");
      say(`edited action denied by policy: ${r.data.codes.join(", ")}`, false);
    }
  }

  async function bulkApprove() {
    const picked = rows().filter((r) => r.querySelector(".pick").checked && r.dataset.can);
    if (!picked.length) return;
    const r = await api("/approvals/bulk", {verdict: "approve", items: picked.map((p) => ({id: p.dataset.id, payload_hash: p.dataset.hash}))});
    if (!r.ok) return alert(JSON.stringify(r.data.detail));
    for (const res of r.data) {
      const row = picked.find((p) => p.dataset.id === res.id);
      if (res.ok) done(row, res.status); else row.classList.add("failed");
    }
  }

  function wirePanel() {
    const on = (id, fn) => { const el = document.getElementById(id); if (el) el.onclick = fn; };
    on("approve", () => decide("approve"));
    on("reject", reject);
    on("save-edit", saveEdit);
  }

  document.addEventListener("change", (e) => {
    if (e.target.classList.contains("pick")) {
      document.getElementById("bulk-approve").disabled = !rows().some((r) => r.querySelector(".pick").checked);
    }
  });
  document.getElementById("bulk-approve").onclick = bulkApprove;
  rows().forEach((r, k) => r.addEventListener("click", (e) => { if (!e.target.classList.contains("pick")) show(k); }));

  document.addEventListener("keydown", (e) => {
    if (["INPUT", "TEXTAREA", "SELECT"].includes(e.target.tagName) || document.querySelector("dialog[open]")) return;
    const keys = {
      j: () => show(current + 1), k: () => show(current - 1), a: () => decide("approve"), r: reject,
      e: () => { const f = document.querySelector("#edit-form input, #edit-form textarea"); if (f) f.focus(); },
      x: () => { const r = rows()[current]; if (r && r.dataset.can) { const c = r.querySelector(".pick"); c.checked = !c.checked; c.dispatchEvent(new Event("change", {bubbles: true})); } },
      A: bulkApprove,
    };
    if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && e.target.closest && e.target.closest("#edit-form") && e.target.tagName === "INPUT") { e.preventDefault(); saveEdit(); }
  });
})();
