// The Copilot panel: ask (JSON API, session cookie), show the answer with its citations
// as links, and "Do it" on a suggestion — which only proposes: the gate and the inbox decide.
(() => {
  const panel = document.getElementById("copilot");
  if (!panel) return;
  const account = document.querySelector("[data-account]").dataset.account;

  async function post(path, body) {
    const res = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                                   body: JSON.stringify(body), credentials: "same-origin"});
    return {ok: res.ok, status: res.status, data: await res.json().catch(() => ({}))};
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;  // text, never HTML: answers quote data
    return node;
  }

  function showAnswer(data) {
    const box = document.getElementById("copilot-answer");
    box.replaceChildren();
    data.sentences.forEach((s) => {
      const p = el("p", {class: "sentence"}, s.text);
      s.cites.forEach((c) => p.append(el("a", {class: "cite", href: `#cite-${c}`, "data-cite": c}, `[${c}]`)));
      box.append(p);
    });
    const list = document.getElementById("copilot-citations");
    list.replaceChildren(...data.citations.map((c) => {
      const li = el("li", {id: `cite-${c.id}`, "data-kind": c.kind});
      li.append(c.url ? el("a", {href: c.url}, `[${c.id}]`) : el("code", {}, `[${c.id}]`));
      li.append(document.createTextNode(` ${c.text}`));
      return li;
    }));
    const cards = document.getElementById("copilot-suggestions");
    cards.replaceChildren(...data.suggestions.map(card));
  }

  function card(s) {
    const div = el("div", {class: "card", "data-suggestion": s.id});
    div.append(el("strong", {}, s.title), el("p", {}, s.reason));
    div.append(el("pre", {}, Object.entries(s.args).map(([k, v]) => `${k}: ${v}`).join("\n")));
    const button = el("button", {class: "do-it primary"}, "Do it");
    const status = el("p", {class: "status", role: "status"});
    button.addEventListener("click", async () => {
      button.disabled = true;
      const r = await post(`/copilot/suggestions/${s.id}/do`, {account_id: account, payload_hash: s.payload_hash});
      if (!r.ok) { status.textContent = `${r.status}: ${JSON.stringify(r.data.detail)}`; status.className = "status error"; button.disabled = false; return; }
      status.textContent = "Proposed: waiting for the gate…";
      follow(r.data.request_id, status);
    });
    div.append(button, status);
    return div;
  }

  async function follow(id, status) {
    for (let i = 0; i < 60; i++) {
      const res = await fetch(`/copilot/requests/${id}`, {credentials: "same-origin"});
      const data = await res.json().catch(() => ({}));
      if (data.approval) {
        status.replaceChildren(document.createTextNode("In the inbox: "),
          el("a", {href: `/inbox?status=${data.approval.status}`, class: "inbox-item", "data-approval": data.approval.id},
             `${data.approval.tool} · ${data.approval.status}`));
        status.className = "status ok";
        return;
      }
      if (data.action && data.action.status !== "pending" && data.action.status !== "allowed") {
        status.textContent = `The gate: ${data.action.tool} ${data.action.status}`;
        status.className = "status ok";
        return;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    status.textContent = "Still on its way: see the inbox.";
  }

  document.getElementById("copilot-ask").addEventListener("submit", async (e) => {
    e.preventDefault();
    const question = document.getElementById("copilot-question").value.trim();
    if (!question) return;
    const r = await post("/copilot/ask", {account_id: account, question});
    if (r.ok) showAnswer(r.data);
    else document.getElementById("copilot-answer").textContent = `${r.status}: ${JSON.stringify(r.data.detail)}`;
  });
})();
